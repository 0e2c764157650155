// y = act(x·W + b) (+ y) for a single row with W in a ggml block format: the barrier-free
// decode kernel of the block formats, with matvec.wgsl's division of work (each invocation owns
// 8 adjacent columns and walks k; the lanes of a group share the loads of x). Within a block
// the quants are multiplied by x as they are and the block's affine map is applied once:
//   Σ_k x_k·(a·q_k + b) = a·Σ_k x_k·q_k + b·Σ_k x_k   (b includes −a·off; Q6_K: a·(Σ x·q − off·Σ x))
// (Q6_K has one `a` per 16-weight half, applied after each half), so a weight costs a
// shift, a mask, a conversion and an FMA; the prefill kernels dequantize each weight instead.
// Needs common.wgsl, weights_quant.wgsl (binding 2, W: (K, np)), activations.wgsl,
// matmul_params.wgsl (binding 1), epilogue.wgsl, store_f32.wgsl (binding 5, Y: (1, ld_y)), one
// lanes_*.wgsl and fused_norm.wgsl (bindings 6, 7: with p.ln set, x is the raw row and the
// kernel applies the preceding norm; it also gives the lanes' `x_value`). K is a multiple of 32.
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;  // (rows, K), one row used
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros

var<private> row: u32;       // texture row: this invocation's 8 columns
var<private> base: u32;      // first texel of the current block
var<private> q: W8;          // Σ x·q over the current half or whole block, columns n0..n0+8
var<private> sx: f32;        // Σ x over the same k

// x_k·q into the partial sums, for one row of 8 columns.
fn acc_row(x: f32, w: W8) {
    q.lo += x * w.lo;
    q.hi += x * w.hi;
}

// Rows 4·st..4·st+4 of the block times x[k..k+4] = v, into the partial sums: one row at a time,
// so that only 8 quants are live (llvmpipe holds each lane's float in an AVX2 register, of
// which there are 16).
fn step4(v: vec4<f32>, st: u32) {
    let s = step_texels(base, st, row);
    acc_row(v.x, step_row(s, 0u));
    acc_row(v.y, step_row(s, 1u));
    acc_row(v.z, step_row(s, 2u));
    acc_row(v.w, step_row(s, 3u));
    sx += v.x + v.y + v.z + v.w;
}

// No early return: every invocation must reach the shared loads (columns past N are computed
// from whatever the texture returns and not written).
@compute @workgroup_size(8)
fn main(ids: Ids) {
    let n0 = (ids.wg.x * 8u + ids.lid.x) * 8u;
    row = n0 >> 3u;
    let k4 = p.k / 4u;
    xb = select(0u, step.row0, p.lm_rows == 1u) * k4;
    let me = lane(ids);
    norm_stats(k4, me);
    var a0 = vec4<f32>(0.0); // y[n0..n0+4]
    var a1 = vec4<f32>(0.0); // y[n0+4..n0+8]
    // Q6_K's offset is applied here; the other formats' is part of `b` (see weights_quant.wgsl).
    let off = select(0.0, f32(QOFF), QFMT == F_Q6_K) * QPOS;
    for (var blk = 0u; blk < p.k / 32u; blk++) {
        base = block_base(blk);
        q = W8(vec4<f32>(0.0), vec4<f32>(0.0));
        sx = 0.0;
        var sum_x = 0.0;
        let i = xb + 8u * blk; // x[32·blk..32·blk+32] as 8 vec4
        let own = x_own(i + me);
        step4(x_from0(own, i), 0u);
        step4(x_from1(own, i + 1u), 1u);
        step4(x_from2(own, i + 2u), 2u);
        step4(x_from3(own, i + 3u), 3u);
        if (QFMT == F_Q6_K) {
            // The first half's own scale.
            let c = coef(blk, row);
            a0 += c.a0.lo * (q.lo - off * sx);
            a1 += c.a0.hi * (q.hi - off * sx);
            q = W8(vec4<f32>(0.0), vec4<f32>(0.0));
            sum_x = sx;
            sx = 0.0;
        }
        step4(x_from4(own, i + 4u), 4u);
        step4(x_from5(own, i + 5u), 5u);
        step4(x_from6(own, i + 6u), 6u);
        step4(x_from7(own, i + 7u), 7u);
        sum_x += sx;
        // The scales are read after the quants, so they hold no registers during the steps.
        let c = coef(blk, row);
        a0 += c.a1.lo * (q.lo - off * sx) + c.b.lo * sum_x;
        a1 += c.a1.hi * (q.hi - off * sx) + c.b.hi * sum_x;
    }
    store8(0u, n0, act8(a0, a1, bias8(n0)));
}
