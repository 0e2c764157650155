// Causal multi-head attention over the KV cache: out = softmax(q·Kᵀ·scale) · V per head,
// with keys 0..=pos+t for the query at batch row t. One invocation per (query, head), an
// online (single-pass) softmax, no workgroup memory. head_dim must be a multiple of 4, ≤ 256.
// Needs common.wgsl.
const MAX_HD4: u32 = 64u;
struct Params {
    c: u32,       // features C = n_head * head_dim
    n_head: u32,
    hd4: u32,     // head_dim / 4
    scale: f32,   // 1/sqrt(head_dim), or 1 when the model does not scale
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> QKV: array<vec4<f32>>;     // (T, 3C): q | k | v
@group(0) @binding(3) var<storage, read> Kc: array<vec4<f32>>;      // (n_positions, C)
@group(0) @binding(4) var<storage, read> Vc: array<vec4<f32>>;      // (n_positions, C)
@group(0) @binding(5) var<storage, read_write> O: array<vec4<f32>>; // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let h = gid.y;
    if (t >= step.n_tokens || h >= p.n_head) {
        return;
    }
    let c4 = p.c / 4u;
    let qbase = t * 3u * c4 + h * p.hd4;
    var q: array<vec4<f32>, MAX_HD4>;
    var acc: array<vec4<f32>, MAX_HD4>;
    for (var d = 0u; d < p.hd4; d++) {
        q[d] = QKV[qbase + d] * p.scale;
        acc[d] = vec4<f32>(0.0);
    }
    var m = -3.0e38; // running max of the scores
    var l = 0.0;     // running sum of exp(score - m)
    let last = step.pos + t;
    for (var j = 0u; j <= last; j++) {
        let kbase = j * c4 + h * p.hd4;
        var s = 0.0;
        for (var d = 0u; d < p.hd4; d++) {
            s += dot(q[d], Kc[kbase + d]);
        }
        if (s > m) {
            let corr = exp(m - s);
            l *= corr;
            for (var d = 0u; d < p.hd4; d++) {
                acc[d] *= corr;
            }
            m = s;
        }
        let e = exp(s - m);
        l += e;
        for (var d = 0u; d < p.hd4; d++) {
            acc[d] += e * Vc[kbase + d];
        }
    }
    let obase = t * c4 + h * p.hd4;
    let inv = 1.0 / l;
    for (var d = 0u; d < p.hd4; d++) {
        O[obase + d] = acc[d] * inv;
    }
}
