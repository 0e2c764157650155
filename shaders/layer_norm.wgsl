// Y = (X - mean) / sqrt(var + eps) * gamma + beta, per row (LayerNorm), or with `rms` set
// Y = X / sqrt(mean(X²) + eps) * gamma (RMSNorm: no centring, beta is zeros). One invocation
// per row, vec4 loads (C is a multiple of 4). Needs common.wgsl.
struct Params {
    c: u32,   // features C
    eps: f32, // layer_norm_epsilon / rms_norm_eps
    rms: u32, // 1: RMSNorm
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;        // (T, C)
@group(0) @binding(3) var<storage, read> gamma: array<vec4<f32>>;    // (C)
@group(0) @binding(4) var<storage, read> beta: array<vec4<f32>>;     // (C)
@group(0) @binding(5) var<storage, read_write> Y: array<vec4<f32>>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= step.n_tokens) {
        return;
    }
    let c4 = p.c / 4u;
    let base = t * c4;
    var sum = vec4<f32>(0.0);
    for (var i = 0u; i < c4; i++) {
        sum += X[base + i];
    }
    let mean = select(dot(sum, vec4<f32>(1.0)) / f32(p.c), 0.0, p.rms == 1u);
    var sq = vec4<f32>(0.0);
    for (var i = 0u; i < c4; i++) {
        let d = X[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(dot(sq, vec4<f32>(1.0)) / f32(p.c) + p.eps);
    for (var i = 0u; i < c4; i++) {
        Y[base + i] = (X[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
