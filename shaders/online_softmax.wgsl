// The state of one query's online (single-pass) softmax over its keys, shared by attention.wgsl
// and attention_rows.wgsl (attention_decode.wgsl uses `softmax_step` with its own per-lane
// query and sum), and the step for a single-token step's own key and value, which
// those kernels read from QKV (the cache entry they write is not read back in the same
// dispatch). Needs attention_params.wgsl (`p`, `QKV`) and one kv_*.wgsl (the cache).
const MAX_HD4: u32 = 64u;

var<private> q: array<vec4<f32>, MAX_HD4>;   // the query, scaled
var<private> acc: array<vec4<f32>, MAX_HD4>; // Σ e·v over the keys so far
var<private> m: f32;                         // running max of the scores
var<private> l: f32;                         // running sum of exp(score - m)

// One key: returns (corr, e), the factor the sums so far are rescaled by and the key's
// weight, from its score (soft-capped here); keys the query does not see (`valid` false:
// past its own position or before its window) weigh 0.
fn softmax_step(score: f32, valid: bool) -> vec2<f32> {
    let s = capped(score);
    let m_new = select(m, max(m, s), valid);
    let corr = exp(m - m_new);
    let e = select(0.0, exp(s - m_new), valid);
    l = l * corr + e;
    m = m_new;
    return vec2<f32>(corr, e);
}

// Stores the token's own key (QKV[kq..kq + hd4]) and value (kv4 vec4 further) at cache entry
// `dst` (its keys; the values are v_offset further).
fn store_own(dst: u32, kq: u32, kv4: u32) {
    for (var d = 0u; d < p.hd4; d++) {
        kv_store(dst + d, QKV[kq + d]);
        kv_store(p.v_offset + dst + d, QKV[kq + kv4 + d]);
    }
}

// The token's own key (QKV[kq..kq + hd4]) and value (kv4 vec4 further), after the cached
// keys: the kernels' arithmetic for a cached key, in the same order (8 vec4 at a time, then
// the rest) and rounded as the cache keeps them (kv_round), so the result has the same bits
// as when the key is read from the cache.
fn attend_own(kq: u32, kv4: u32) {
    let hd8 = p.hd4 / 8u * 8u;
    var s = 0.0;
    for (var d = 0u; d < hd8; d += 8u) {
        let i = kq + d;
        s += dot(q[d], kv_round(QKV[i])) + dot(q[d + 1u], kv_round(QKV[i + 1u]))
            + dot(q[d + 2u], kv_round(QKV[i + 2u])) + dot(q[d + 3u], kv_round(QKV[i + 3u]))
            + dot(q[d + 4u], kv_round(QKV[i + 4u])) + dot(q[d + 5u], kv_round(QKV[i + 5u]))
            + dot(q[d + 6u], kv_round(QKV[i + 6u])) + dot(q[d + 7u], kv_round(QKV[i + 7u]));
    }
    for (var d = hd8; d < p.hd4; d++) {
        s += dot(q[d], kv_round(QKV[kq + d]));
    }
    let w = softmax_step(s, true);
    for (var d = 0u; d < p.hd4; d++) {
        acc[d] = acc[d] * w.x + w.y * kv_round(QKV[kq + kv4 + d]);
    }
}
