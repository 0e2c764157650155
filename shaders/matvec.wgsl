// y = act(x·W + b) (+ y) for a single row: the decode path, bound by reading W once.
// Needs common.wgsl, activations.wgsl, matmul_params.wgsl (binding 1), epilogue.wgsl,
// store_f32.wgsl (binding 5, Y: (1, ld_y)), one weights_*.wgsl (binding 2, W: (K, np)), one
// lanes_*.wgsl and fused_norm.wgsl (bindings 6, 7). Each invocation owns 8 adjacent columns
// and walks k; x is the same for every invocation, so each invocation of a lane group loads
// one vec4 of every 8 and shares it.
// With p.ln set, x is the raw row and the kernel applies the preceding norm (fused_norm.wgsl,
// which also gives the lanes' `x_value`).
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;  // (rows, K), one row used
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros

var<private> n0: u32;         // first of this invocation's 8 columns
var<private> a0: vec4<f32>;   // y[n0..n0+4]
var<private> a1: vec4<f32>;   // y[n0+4..n0+8]

// acc += x[k..k+4] · W[k..k+4, n0..n0+8]
fn step4(v: vec4<f32>, k: u32) {
    let w = w4(k, n0);
    a0 += v.x * w.r0.lo + v.y * w.r1.lo + v.z * w.r2.lo + v.w * w.r3.lo;
    a1 += v.x * w.r0.hi + v.y * w.r1.hi + v.z * w.r2.hi + v.w * w.r3.hi;
}

// No early return: every invocation must reach the shared loads (columns past N are computed
// from whatever the texture returns and not written).
@compute @workgroup_size(8)
fn main(ids: Ids) {
    n0 = (ids.wg.x * 8u + ids.lid.x) * 8u;
    let k4 = p.k / 4u;
    xb = select(0u, step.row0, p.lm_rows == 1u) * k4;
    let me = lane(ids);
    norm_stats(k4, me);
    let chunks = k4 / 8u;
    for (var j = 0u; j < chunks; j++) {
        let i = xb + 8u * j; // x[32j..32j+32] as 8 vec4
        let own = x_own(i + me);
        let k = 32u * j;
        step4(x_from0(own, i), k);
        step4(x_from1(own, i + 1u), k + 4u);
        step4(x_from2(own, i + 2u), k + 8u);
        step4(x_from3(own, i + 3u), k + 12u);
        step4(x_from4(own, i + 4u), k + 16u);
        step4(x_from5(own, i + 5u), k + 20u);
        step4(x_from6(own, i + 6u), k + 24u);
        step4(x_from7(own, i + 7u), k + 28u);
    }
    for (var j = 8u * chunks; j < k4; j++) {
        step4(x_value(xb + j), 4u * j);
    }
    store8(0u, n0, act8(a0, a1, bias8(n0)));
}
