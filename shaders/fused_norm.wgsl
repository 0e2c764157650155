// The LayerNorm (p.ln = 1) or RMSNorm (p.ln = 2, beta zeros) that the barrier-free one-row
// kernels (matvec.wgsl, matvec_quant.wgsl) apply to their x row themselves in a decode step,
// so that the forward pass launches no LayerNorm before them (`Kernels::fuses_decode_norm`).
// Every workgroup computes the row's statistics as layer_norm.wgsl does — the mean, then the
// mean squared deviation from it — with each lane of a group summing a share of the row and
// the group adding the shares (lanes_*.wgsl); the lanes then share normalized values
// (`x_value`, with the row's offset `xb` that the kernel sets). Needs matmul_params.wgsl, one
// lanes_*.wgsl and the kernel's X.
@group(0) @binding(6) var<storage, read> G: array<vec4<f32>>;  // (K) gamma (ln ≠ 0)
@group(0) @binding(7) var<storage, read> Be: array<vec4<f32>>; // (K) beta (ln ≠ 0; zeros for RMSNorm)

var<private> xb: u32;        // the row's first vec4 in X (set by the kernel)
var<private> norm_mean: f32; // mean of the row (0 for RMSNorm)
var<private> norm_inv: f32;  // 1 / sqrt(variance + eps)

// The statistics of the row of k4 vec4 at X[xb..] (nothing when p.ln = 0); `me`: the lane.
fn norm_stats(k4: u32, me: u32) {
    if (p.ln == 0u) {
        return;
    }
    let first = me % LANE_GROUP;
    var s = vec4<f32>(0.0);
    for (var j = first; j < k4; j += LANE_GROUP) {
        s += X[xb + j];
    }
    norm_mean = select(dot(lanes_add4(s), vec4<f32>(1.0)) / f32(p.k), 0.0, p.ln == 2u);
    var q = vec4<f32>(0.0);
    for (var j = first; j < k4; j += LANE_GROUP) {
        let d = X[xb + j] - norm_mean;
        q += d * d;
    }
    norm_inv = inverseSqrt(dot(lanes_add4(q), vec4<f32>(1.0)) / f32(p.k) + p.eps);
}

// x[4c..4c+4] = v normalized (v itself when p.ln = 0).
fn x_norm(v: vec4<f32>, c: u32) -> vec4<f32> {
    if (p.ln == 0u) {
        return v;
    }
    return (v - norm_mean) * norm_inv * G[c] + Be[c];
}

// The values the lanes share (lanes_*.wgsl): x, normalized where the norm is fused.
fn x_value(i: u32) -> vec4<f32> {
    return x_norm(X[i], i - xb);
}
