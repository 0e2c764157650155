// Y as vec4, for outputs whose rows start on 16-byte boundaries (N, ld_y and y_col0 multiples
// of 4; `MatmulSpec::vec4_stores`): the epilogue's store, four columns at a time, a quarter of
// store_f32.wgsl's stores. Needs matmul_params.wgsl and epilogue.wgsl.
@group(0) @binding(5) var<storage, read_write> Y: array<vec4<f32>>;  // (rows, ld_y / 4)

// Columns n0..n0+8 of the row whose first element of Y is y0 (m·ld_y): Y = v, or Y += v when
// accumulating (columns past N are not written; N is a multiple of 4).
fn store8(y0: u32, n0: u32, v: W8) {
    let i = (y0 + p.y_col0 + n0) / 4u;
    if (n0 + 8u <= p.n) {
        if (p.accumulate == 1u) {
            Y[i] = Y[i] + v.lo;
            Y[i + 1u] = Y[i + 1u] + v.hi;
        } else {
            Y[i] = v.lo;
            Y[i + 1u] = v.hi;
        }
    } else if (n0 + 4u <= p.n) {
        if (p.accumulate == 1u) {
            Y[i] = Y[i] + v.lo;
        } else {
            Y[i] = v.lo;
        }
    }
}
