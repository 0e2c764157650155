// Y = (X - mean) / sqrt(var + eps) * gamma + beta, per row. One invocation per row.
// Needs common.wgsl.
struct Params {
    c: u32,   // features C
    eps: f32, // layer_norm_epsilon
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> X: array<f32>;        // (T, C)
@group(0) @binding(3) var<storage, read> gamma: array<f32>;    // (C)
@group(0) @binding(4) var<storage, read> beta: array<f32>;     // (C)
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= step.n_tokens) {
        return;
    }
    let base = t * p.c;
    var sum = 0.0;
    for (var i = 0u; i < p.c; i++) {
        sum += X[base + i];
    }
    let mean = sum / f32(p.c);
    var sq = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = X[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(sq / f32(p.c) + p.eps);
    for (var i = 0u; i < p.c; i++) {
        Y[base + i] = (X[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
