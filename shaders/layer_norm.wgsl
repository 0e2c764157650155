// Y = (X - mean) / sqrt(var + eps) * gamma + beta, per row (LayerNorm), or with `rms` set
// Y = X / sqrt(mean(X²) + eps) * gamma (RMSNorm: no centring, beta is zeros). A workgroup of 8
// invocations per row (vec4 loads; C is a multiple of 4) computes the statistics exactly as
// fused_norm.wgsl does — each lane of a group sums a share of the row, the group adds the
// shares (lanes_*.wgsl) — so a decode step's fused norm gives the same bits as this kernel and
// a sequence decodes the same alone or in a batch; then every lane writes a share of Y. (One
// invocation per row with its own 8 partial sums cost 4–7 ms per launch on Vulkan lavapipe at
// small widths, docs/benchmarks.md.) Needs common.wgsl and one lanes_*.wgsl.
struct Params {
    c: u32,   // features C
    eps: f32, // layer_norm_epsilon / rms_norm_eps
    rms: u32, // 1: RMSNorm
    add: u32, // 1: Y += the norm (a norm on a residual branch, Gemma's post-norms)
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;        // (T, C)
@group(0) @binding(3) var<storage, read> gamma: array<vec4<f32>>;    // (C)
@group(0) @binding(4) var<storage, read> beta: array<vec4<f32>>;     // (C)
@group(0) @binding(5) var<storage, read_write> Y: array<vec4<f32>>;  // (T, C)

// What the lanes share (lanes_*.wgsl asks for it; this kernel only adds).
fn x_value(i: u32) -> vec4<f32> {
    return X[i];
}

@compute @workgroup_size(8)
fn main(ids: Ids) {
    let t = ids.wg.y;
    if (t >= step.n_tokens) {
        return;
    }
    let c4 = p.c / 4u;
    let base = t * c4;
    let me = lane(ids);
    let first = me % LANE_GROUP;
    var s = vec4<f32>(0.0);
    for (var j = first; j < c4; j += LANE_GROUP) {
        s += X[base + j];
    }
    let mean = select(dot(lanes_add4(s), vec4<f32>(1.0)) / f32(p.c), 0.0, p.rms == 1u);
    var q = vec4<f32>(0.0);
    for (var j = first; j < c4; j += LANE_GROUP) {
        let d = X[base + j] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(dot(lanes_add4(q), vec4<f32>(1.0)) / f32(p.c) + p.eps);
    for (var i = me; i < c4; i += 8u) {
        var y = (X[base + i] - mean) * inv * gamma[i] + beta[i];
        if (p.add == 1u) {
            y += Y[base + i]; // only a norm on a residual branch reads Y
        }
        Y[base + i] = y;
    }
}
