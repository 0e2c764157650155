// RMSNorm of every query and key head of the batch, in place (Qwen3's and Gemma 3's q_norm and
// k_norm, applied after the projection and before rotary positions): each head's head_dim
// values x become x / sqrt(mean(x²) + eps) · gamma, with the query heads' gamma or the key
// heads'. (Gemma's `1 + w` is folded into gamma at upload.)
// One invocation per (head, token): global_invocation_id.x is the head (query heads first,
// then key heads), .y the batch row; the sum runs over the head in order. Needs common.wgsl.
struct Params {
    ld: u32,       // row stride of QKV in floats (q | k | v of one token)
    head_dim: u32, // dimensions per head
    q_heads: u32,  // query heads, at columns 0..q_heads·head_dim
    k_heads: u32,  // key heads, at columns k_col0..k_col0 + k_heads·head_dim
    k_col0: u32,   // first key column
    eps: f32,      // rms_norm_eps
    _pad0: u32,
    _pad1: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> QKV: array<f32>;  // (T, ld): q | k | v
@group(0) @binding(3) var<storage, read> q_gamma: array<f32>;    // (head_dim)
@group(0) @binding(4) var<storage, read> k_gamma: array<f32>;    // (head_dim)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || h >= p.q_heads + p.k_heads) {
        return;
    }
    let is_key = h >= p.q_heads;
    let base = t * p.ld + select(h * p.head_dim, p.k_col0 + (h - p.q_heads) * p.head_dim, is_key);
    var sq = 0.0;
    for (var d = 0u; d < p.head_dim; d++) {
        let x = QKV[base + d];
        sq += x * x;
    }
    let inv = inverseSqrt(sq / f32(p.head_dim) + p.eps);
    for (var d = 0u; d < p.head_dim; d++) {
        let g = select(q_gamma[d], k_gamma[d], is_key);
        QKV[base + d] = QKV[base + d] * inv * g;
    }
}
