// The epilogue of the barrier-free matmul and matrix-vector kernels: 8 adjacent columns of one
// row of Y = act(acc + b) (+ Y when accumulating). Needs activations.wgsl, matmul_params.wgsl
// and the kernel's B (bias, (N)) and Y.
// (On lavapipe a storage access costs a loop over the SIMD lanes with a bounds branch per
// component, so vec4 loads and stores here measured no faster than these scalar ones.)

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

// Columns n0..n0+8 of the row whose first element of Y is y0 (m·ld_y), from the accumulated
// sums of columns n0..n0+4 (lo) and n0+4..n0+8 (hi) and their bias (`bias8`).
fn store8(y0: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>, bias: array<vec4<f32>, 2>) {
    let r = array<vec4<f32>, 2>(lo + bias[0], hi + bias[1]);
    for (var c = 0u; c < 8u; c++) {
        let n = n0 + c;
        if (n >= p.n) { break; }
        let v = activate(r[c / 4u][c % 4u], p.act);
        let idx = y0 + p.y_col0 + n;
        if (p.accumulate == 1u) {
            Y[idx] = Y[idx] + v;
        } else {
            Y[idx] = v;
        }
    }
}
