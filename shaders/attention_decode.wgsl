// Causal multi-head attention for batches whose rows are single tokens (decode): a session's
// one-token step, or a batch of sequences (`step.per_row` = 1), row t attending to keys
// 0..=row_pos(t) of cache slot row_slot(t). The barrier-free family's kernel for these steps
// where the adapter has subgroups (without them, attention.wgsl and attention_rows.wgsl).
// One workgroup of 8 invocations per (row, query head): the 8 lanes split the head's
// dimensions (lane L holds vec4 L, L + 8, …), so each key and value is loaded once, by the
// lanes between them, and the query and the running sum stay in registers; a key's score is
// the lanes' partial dot products summed with `subgroupAdd`. An online (single-pass)
// softmax, no workgroup memory. Query head h reads key/value head h / group. Keys before the
// row's sliding window (first_key) are skipped; scores are soft-capped in softmax_step.
// A single-token step, and each row of a batch of sequences (one token per row), stores its
// own key and value in the cache here (the forward pass launches no kv_store then) and takes
// them from QKV, with the same arithmetic as a cached key; a prefill chunk's rows were stored
// by kv_store. head_dim must be a multiple of 4, ≤ 256.
// Needs common.wgsl, attention_params.wgsl, one kv_*.wgsl and online_softmax.wgsl (`softmax_step`).

const NV: u32 = 8u; // vec4 per lane at most: 8 lanes · 8 · 4 = head_dim 256

// This lane's share of a head: vec4 i of the lane is dimension (lane + 8i)·4.. of the head;
// past hd4 (head_dim not a multiple of 32) a lane repeats the head's last vec4 with a zero
// query, so every lane runs the same code and those dimensions add nothing.
var<private> lane_q: array<vec4<f32>, NV>;   // the query, scaled (zero past hd4)
var<private> lane_acc: array<vec4<f32>, NV>; // Σ e·v over the keys so far

// The vec4 of the head that the lane's i-th share reads (clamped past hd4).
fn dim(me: u32, i: u32) -> u32 {
    return min(me + 8u * i, p.hd4 - 1u);
}

// One key and its value, the lane's shares of them: the score (the lanes' partial dot
// products summed), the online softmax step, the running sum.
fn attend(k: array<vec4<f32>, NV>, v: array<vec4<f32>, NV>) {
    var s = 0.0;
    for (var i = 0u; i < NV; i++) {
        if (8u * i < p.hd4) {
            s += dot(lane_q[i], k[i]);
        }
    }
    let w = softmax_step(subgroupAdd(s), true);
    for (var i = 0u; i < NV; i++) {
        if (8u * i < p.hd4) {
            lane_acc[i] = lane_acc[i] * w.x + w.y * v[i];
        }
    }
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let me = lid.x;
    let h = wg.x;
    let t = wg.y;
    let q4 = p.q_c / 4u;
    let kv4 = p.kv_c / 4u;
    let qbase = t * (q4 + 2u * kv4) + h * p.hd4;
    // group ≥ 1, checked on the host; the slot's keys and values start at its base
    let kvh = row_slot(t) * 2u * p.v_offset + (h / p.group) * p.hd4;
    for (var i = 0u; i < NV; i++) {
        if (8u * i < p.hd4) {
            let q = QKV[qbase + dim(me, i)] * p.scale;
            lane_q[i] = select(vec4<f32>(0.0), q, me + 8u * i < p.hd4);
            lane_acc[i] = vec4<f32>(0.0);
        }
    }
    m = -3.0e38;
    l = 0.0;
    let last = row_pos(t);
    let single = step.n_tokens == 1u || step.per_row == 1u; // the row's own key is in QKV
    let cached = last + 1u - u32(single); // keys read from the cache
    var k: array<vec4<f32>, NV>;
    var v: array<vec4<f32>, NV>;
    for (var j = first_key(last); j < cached; j++) {
        let kb = cache_row(j) * kv4 + kvh;
        for (var i = 0u; i < NV; i++) {
            if (8u * i < p.hd4) {
                k[i] = kv_load(kb + dim(me, i));
                v[i] = kv_load(p.v_offset + kb + dim(me, i));
            }
        }
        attend(k, v);
    }
    if (single) {
        // The token's own key and value (key/value head h / group) from QKV, stored once per
        // key/value head, each lane its share.
        let kq = t * (q4 + 2u * kv4) + q4 + (h / p.group) * p.hd4;
        let dst = cache_row(last) * kv4 + kvh;
        for (var i = 0u; i < NV; i++) {
            if (8u * i < p.hd4) {
                k[i] = kv_round(QKV[kq + dim(me, i)]);
                v[i] = kv_round(QKV[kq + kv4 + dim(me, i)]);
                if (h % p.group == 0u && me + 8u * i < p.hd4) {
                    kv_store(dst + dim(me, i), k[i]);
                    kv_store(p.v_offset + dst + dim(me, i), v[i]);
                }
            }
        }
        attend(k, v);
    }
    let obase = t * q4 + h * p.hd4;
    let inv = 1.0 / l;
    for (var i = 0u; i < NV; i++) {
        if (me + 8u * i < p.hd4) {
            O[obase + me + 8u * i] = lane_acc[i] * inv;
        }
    }
}
