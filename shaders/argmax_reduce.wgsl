// The workgroup reduction of argmax_wide.wgsl and argmax_pick.wgsl: the best of the n
// invocations' candidates (argmax_common.wgsl's rule) through workgroup memory. `n` is the
// workgroup size, a power of two ≤ 256, the same constant at every call; call from uniform
// control flow. Every invocation gets the result as (f32 bits of the value, index).
var<workgroup> top: array<f32, 256>; // (n) each invocation's candidate value, then the tree's
var<workgroup> at: array<u32, 256>;  // (n) its index

fn wg_best(value: f32, index: u32, li: u32, n: u32) -> vec2<u32> {
    top[li] = value;
    at[li] = index;
    for (var s = n / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s && replaces(top[li], at[li], top[li + s], at[li + s])) {
            top[li] = top[li + s];
            at[li] = at[li + s];
        }
    }
    workgroupBarrier();
    return vec2<u32>(bitcast<u32>(top[0]), at[0]);
}
