// Y as floats, for any N, ld_y and y_col0: the epilogue's store, one column at a time.
// Needs matmul_params.wgsl and epilogue.wgsl.
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (rows, ld_y)

// Columns n0..n0+8 of the row whose first element of Y is y0 (m·ld_y): Y = v, or Y += v when
// accumulating (columns past N are not written).
// (On lavapipe a storage access costs a loop over the SIMD lanes with a bounds branch per
// component: store_vec4.wgsl takes a quarter of the stores where the layout allows.)
fn store8(y0: u32, n0: u32, v: W8) {
    let r = array<vec4<f32>, 2>(v.lo, v.hi);
    for (var c = 0u; c < 8u; c++) {
        let n = n0 + c;
        if (n >= p.n) { break; }
        let idx = y0 + p.y_col0 + n;
        if (p.accumulate == 1u) {
            Y[idx] = Y[idx] + r[c / 4u][c % 4u];
        } else {
            Y[idx] = r[c / 4u][c % 4u];
        }
    }
}
