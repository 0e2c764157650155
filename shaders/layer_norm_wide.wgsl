// Y = (X - mean) / sqrt(var + eps) * gamma + beta, per row (or RMSNorm with `rms` set, see
// layer_norm.wgsl): the cooperative variant of layer_norm.wgsl for hardware GPUs. One workgroup of 64 per row (workgroup_id.y), each
// invocation every 64th vec4, the sums reduced in workgroup memory. Two passes over the row
// (mean, then the variance of the centred values), as in layer_norm.wgsl.
// Needs common.wgsl and workgroup_reduce.wgsl.
struct Params {
    c: u32,   // features C (multiple of 4)
    eps: f32, // layer_norm_epsilon / rms_norm_eps
    rms: u32, // 1: RMSNorm (no centring, beta is zeros)
    add: u32, // 1: Y += the norm (a norm on a residual branch, Gemma's post-norms)
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;        // (T, C)
@group(0) @binding(3) var<storage, read> gamma: array<vec4<f32>>;    // (C)
@group(0) @binding(4) var<storage, read> beta: array<vec4<f32>>;     // (C)
@group(0) @binding(5) var<storage, read_write> Y: array<vec4<f32>>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    if (wg.y >= step.n_tokens) {
        return; // uniform: the whole workgroup is one row
    }
    let c4 = p.c / 4u;
    let base = wg.y * c4;
    var sum = vec4<f32>(0.0);
    for (var i = li; i < c4; i += 64u) {
        sum += X[base + i];
    }
    let mean = select(wg_sum(dot(sum, vec4<f32>(1.0)), li, 64u) / f32(p.c), 0.0, p.rms == 1u);
    var sq = vec4<f32>(0.0);
    for (var i = li; i < c4; i += 64u) {
        let d = X[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(wg_sum(dot(sq, vec4<f32>(1.0)), li, 64u) / f32(p.c) + p.eps);
    for (var i = li; i < c4; i += 64u) {
        var y = (X[base + i] - mean) * inv * gamma[i] + beta[i];
        if (p.add == 1u) {
            y += Y[base + i]; // only a norm on a residual branch reads Y
        }
        Y[base + i] = y;
    }
}
