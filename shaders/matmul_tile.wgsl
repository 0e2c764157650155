// The 8×8 register tile shared by matmul.wgsl and matmul_block.wgsl: rows m0..m0+8 (their
// offsets into X, in vec4 units, in `xo`) × columns n0..n0+8, then the epilogue
// (epilogue.wgsl, stored by store_*.wgsl). Per step of 4 k it needs one vec4 of X per row
// (each invocation of a lane group loads the row of its lane, `xo[lane]`, and the lanes share
// them, see lanes_*.wgsl) and eight weights per k, and does 256 multiply-adds in named
// registers. The including kernel provides `X` and `B`; the parameters `p` are in
// matmul_params.wgsl.

fn matmul_tile(xo: array<u32, 8>, own_xo: u32, m0: u32, n0: u32, rows: u32) {
    let k4 = p.k / 4u;
    // a{i}: row i, columns 0..3; b{i}: row i, columns 4..7.
    var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    for (var j = 0u; j < k4; j++) {
        // X[m, 4j..4j+4] for the 8 rows.
        let own = x_own(own_xo + j);
        let v0 = x_from0(own, xo[0] + j); let v1 = x_from1(own, xo[1] + j);
        let v2 = x_from2(own, xo[2] + j); let v3 = x_from3(own, xo[3] + j);
        let v4 = x_from4(own, xo[4] + j); let v5 = x_from5(own, xo[5] + j);
        let v6 = x_from6(own, xo[6] + j); let v7 = x_from7(own, xo[7] + j);
        // W[4j + t, n0..n0+8] for t = 0..3.
        let k = 4u * j;
        let w = w4(k, n0);
        let w0 = w.r0;
        let w1 = w.r1;
        let w2 = w.r2;
        let w3 = w.r3;
        a0 += v0.x * w0.lo + v0.y * w1.lo + v0.z * w2.lo + v0.w * w3.lo;
        b0 += v0.x * w0.hi + v0.y * w1.hi + v0.z * w2.hi + v0.w * w3.hi;
        a1 += v1.x * w0.lo + v1.y * w1.lo + v1.z * w2.lo + v1.w * w3.lo;
        b1 += v1.x * w0.hi + v1.y * w1.hi + v1.z * w2.hi + v1.w * w3.hi;
        a2 += v2.x * w0.lo + v2.y * w1.lo + v2.z * w2.lo + v2.w * w3.lo;
        b2 += v2.x * w0.hi + v2.y * w1.hi + v2.z * w2.hi + v2.w * w3.hi;
        a3 += v3.x * w0.lo + v3.y * w1.lo + v3.z * w2.lo + v3.w * w3.lo;
        b3 += v3.x * w0.hi + v3.y * w1.hi + v3.z * w2.hi + v3.w * w3.hi;
        a4 += v4.x * w0.lo + v4.y * w1.lo + v4.z * w2.lo + v4.w * w3.lo;
        b4 += v4.x * w0.hi + v4.y * w1.hi + v4.z * w2.hi + v4.w * w3.hi;
        a5 += v5.x * w0.lo + v5.y * w1.lo + v5.z * w2.lo + v5.w * w3.lo;
        b5 += v5.x * w0.hi + v5.y * w1.hi + v5.z * w2.hi + v5.w * w3.hi;
        a6 += v6.x * w0.lo + v6.y * w1.lo + v6.z * w2.lo + v6.w * w3.lo;
        b6 += v6.x * w0.hi + v6.y * w1.hi + v6.z * w2.hi + v6.w * w3.hi;
        a7 += v7.x * w0.lo + v7.y * w1.lo + v7.z * w2.lo + v7.w * w3.lo;
        b7 += v7.x * w0.hi + v7.y * w1.hi + v7.z * w2.hi + v7.w * w3.hi;
    }
    let acc = array<vec4<f32>, 16>(a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7);
    let bias = bias8(n0);
    for (var i = 0u; i < 8u; i++) {
        let m = m0 + i;
        if (m >= rows) { break; }
        store8(m * p.ld_y, n0, act8(acc[2u * i], acc[2u * i + 1u], bias));
    }
}
