// The epilogue of the barrier-free matmul and matrix-vector kernels: 8 adjacent columns of one
// row of Y = act(acc + b) (+ Y when accumulating). Needs activations.wgsl, matmul_params.wgsl
// and the kernel's B (bias, (N)); one store_*.wgsl binds Y and writes the values.

// The bias of columns n0..n0+8 (lo: n0..n0+4, hi: n0+4..n0+8; zeros past N), loaded once per
// invocation: the 8×8 tile's eight rows share it.
fn bias8(n0: u32) -> array<vec4<f32>, 2> {
    var b = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var c = 0u; c < 8u; c++) {
        if (n0 + c >= p.n) { break; }
        b[c / 4u][c % 4u] = B[p.b0 + n0 + c];
    }
    return b;
}

// act(acc + b) of one row's 8 columns, from the sums of columns n0..n0+4 (lo) and
// n0+4..n0+8 (hi) and their bias (`bias8`). Columns past N get values that are not stored.
fn act8(lo: vec4<f32>, hi: vec4<f32>, bias: array<vec4<f32>, 2>) -> W8 {
    let a = lo + bias[0];
    let b = hi + bias[1];
    let f = p.act;
    return W8(
        vec4<f32>(activate(a.x, f), activate(a.y, f), activate(a.z, f), activate(a.w, f)),
        vec4<f32>(activate(b.x, f), activate(b.y, f), activate(b.z, f), activate(b.w, f)),
    );
}
