// Y = (X - mean) / sqrt(var + eps) * gamma + beta, per row (LayerNorm), or with `rms` set
// Y = X / sqrt(mean(X²) + eps) * gamma (RMSNorm: no centring, beta is zeros). One invocation
// per row, vec4 loads (C is a multiple of 4). The sums run in fused_norm.wgsl's order (8
// strided partial sums, then added in order), so a decode step's fused norm gives the same
// bits as this kernel and a sequence decodes the same alone or in a batch. Needs common.wgsl.
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

// Σ over the row's c4 vec4 at X[base..] of (x − m)² (`squares`) or of x, in fused_norm.wgsl's
// order: 8 partial sums (vec4 L, L + 8, … in the L-th), added in order.
fn sum8(base: u32, c4: u32, m: f32, squares: bool) -> vec4<f32> {
    var s0 = vec4<f32>(0.0); var s1 = vec4<f32>(0.0); var s2 = vec4<f32>(0.0); var s3 = vec4<f32>(0.0);
    var s4 = vec4<f32>(0.0); var s5 = vec4<f32>(0.0); var s6 = vec4<f32>(0.0); var s7 = vec4<f32>(0.0);
    for (var i = 0u; i < c4; i += 8u) {
        s0 += term(base + i, m, squares);
        if (i + 1u < c4) { s1 += term(base + i + 1u, m, squares); }
        if (i + 2u < c4) { s2 += term(base + i + 2u, m, squares); }
        if (i + 3u < c4) { s3 += term(base + i + 3u, m, squares); }
        if (i + 4u < c4) { s4 += term(base + i + 4u, m, squares); }
        if (i + 5u < c4) { s5 += term(base + i + 5u, m, squares); }
        if (i + 6u < c4) { s6 += term(base + i + 6u, m, squares); }
        if (i + 7u < c4) { s7 += term(base + i + 7u, m, squares); }
    }
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

fn term(i: u32, m: f32, squares: bool) -> vec4<f32> {
    if (squares) {
        let d = X[i] - m;
        return d * d;
    }
    return X[i];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= step.n_tokens) {
        return;
    }
    let c4 = p.c / 4u;
    let base = t * c4;
    let mean = select(dot(sum8(base, c4, 0.0, false), vec4<f32>(1.0)) / f32(p.c), 0.0, p.rms == 1u);
    let sq = sum8(base, c4, mean, true);
    let inv = inverseSqrt(dot(sq, vec4<f32>(1.0)) / f32(p.c) + p.eps);
    for (var i = 0u; i < c4; i++) {
        var y = (X[base + i] - mean) * inv * gamma[i] + beta[i];
        if (p.add == 1u) {
            y += Y[base + i]; // only a norm on a residual branch reads Y
        }
        Y[base + i] = y;
    }
}
