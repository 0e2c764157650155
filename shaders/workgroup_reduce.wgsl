// Sums and maxima over the invocations of a workgroup, through workgroup memory (the
// cooperative kernels). `n` is the workgroup size, a power of two ≤ 256, the same constant at
// every call; call from uniform control flow. Every invocation gets the result.
var<workgroup> red: array<f32, 256>; // (n) one value per invocation

fn wg_sum(v: f32, li: u32, n: u32) -> f32 {
    red[li] = v;
    for (var s = n / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red[li] += red[li + s];
        }
    }
    workgroupBarrier();
    let r = red[0];
    workgroupBarrier(); // every invocation has read `red` before it is reused
    return r;
}

fn wg_max(v: f32, li: u32, n: u32) -> f32 {
    red[li] = v;
    for (var s = n / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
    }
    workgroupBarrier();
    let r = red[0];
    workgroupBarrier();
    return r;
}
