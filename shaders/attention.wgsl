// Causal multi-head attention over the KV cache: out = softmax(q·Kᵀ·scale) · V per head,
// with keys first_key(pos+t)..=pos+t of cache slot `step.slot` for the query at batch row t
// (all keys before it, or its sliding window's; soft-capped scores where the model caps): the batch is
// one sequence's tokens (a batch of sequences uses attention_rows.wgsl). Query head h reads key/value head
// h / group (grouped-query attention; group = 1 is plain multi-head attention). One invocation per (query, head), an
// online (single-pass) softmax, no workgroup memory. head_dim must be a multiple of 4, ≤ 256.
// The 8 invocations of a workgroup are 8 consecutive queries of one head: they read the same
// keys and values, so each loads an eighth of every row and shares it (lanes_*.wgsl); they
// all walk to the last key of the group and ignore the keys past their own.
// A single-token step (decode) stores its own key and value in the cache here, so the forward
// pass launches no kv_store then (src/kernels/kv_store.rs): with no barriers, nothing in this
// dispatch reads the entry it writes; every query head takes that last key and value from QKV.
// Needs common.wgsl, attention_params.wgsl, one kv_*.wgsl, online_softmax.wgsl and one lanes_*.wgsl.

// The values the lanes share (lanes_*.wgsl).
fn x_value(i: u32) -> vec4<f32> { return kv_load(i); }

// No early return: every invocation takes part in the shared loads; rows past the batch
// repeat the last query and are not written.
@compute @workgroup_size(8)
fn main(ids: Ids) {
    let me = lane(ids);
    let h = ids.wg.y;
    let row = ids.wg.x * 8u + ids.lid.x;
    let t = min(row, step.n_tokens - 1u);
    let q4 = p.q_c / 4u;
    let kv4 = p.kv_c / 4u;
    let qbase = t * (q4 + 2u * kv4) + h * p.hd4;
    // group ≥ 1, checked on the host; the slot's keys and values start at its base
    let kvh = step.slot * 2u * p.v_offset + (h / p.group) * p.hd4;
    for (var d = 0u; d < p.hd4; d++) {
        q[d] = QKV[qbase + d] * p.scale;
        acc[d] = vec4<f32>(0.0);
    }
    m = -3.0e38;
    l = 0.0;
    let last = step.pos + t;
    let group_last = step.pos + min(ids.wg.x * 8u + 7u, step.n_tokens - 1u);
    let hd8 = p.hd4 / 8u * 8u; // dimensions loaded 8 vec4 at a time; the rest one by one
    // Decode: the token's key and value (key/value head h / group) from QKV, stored once per
    // key/value head; the cache is read for the keys before it only.
    let single = step.n_tokens == 1u;
    let kq = t * (q4 + 2u * kv4) + q4 + (h / p.group) * p.hd4;
    if (single && ids.lid.x == 0u && h % p.group == 0u) {
        store_own(cache_row(step.pos) * kv4 + kvh, kq, kv4);
    }
    // The group's keys: from the first query's window start to the last query's position.
    let first = first_key(step.pos + ids.wg.x * 8u);
    let own_first = first_key(last);
    let cached = group_last + 1u - u32(single); // keys read from the cache
    for (var j = first; j < cached; j++) {
        let kb = cache_row(j) * kv4 + kvh;
        var s = 0.0;
        for (var d = 0u; d < hd8; d += 8u) {
            let i = kb + d;
            let own = x_own(i + me);
            s += dot(q[d], x_from0(own, i)) + dot(q[d + 1u], x_from1(own, i + 1u))
                + dot(q[d + 2u], x_from2(own, i + 2u)) + dot(q[d + 3u], x_from3(own, i + 3u))
                + dot(q[d + 4u], x_from4(own, i + 4u)) + dot(q[d + 5u], x_from5(own, i + 5u))
                + dot(q[d + 6u], x_from6(own, i + 6u)) + dot(q[d + 7u], x_from7(own, i + 7u));
        }
        for (var d = hd8; d < p.hd4; d++) {
            s += dot(q[d], kv_load(kb + d));
        }
        let w = softmax_step(s, j <= last && j >= own_first);
        let vb = p.v_offset + kb;
        for (var d = 0u; d < hd8; d += 8u) {
            let i = vb + d;
            let own = x_own(i + me);
            acc[d] = acc[d] * w.x + w.y * x_from0(own, i);
            acc[d + 1u] = acc[d + 1u] * w.x + w.y * x_from1(own, i + 1u);
            acc[d + 2u] = acc[d + 2u] * w.x + w.y * x_from2(own, i + 2u);
            acc[d + 3u] = acc[d + 3u] * w.x + w.y * x_from3(own, i + 3u);
            acc[d + 4u] = acc[d + 4u] * w.x + w.y * x_from4(own, i + 4u);
            acc[d + 5u] = acc[d + 5u] * w.x + w.y * x_from5(own, i + 5u);
            acc[d + 6u] = acc[d + 6u] * w.x + w.y * x_from6(own, i + 6u);
            acc[d + 7u] = acc[d + 7u] * w.x + w.y * x_from7(own, i + 7u);
        }
        for (var d = hd8; d < p.hd4; d++) {
            acc[d] = acc[d] * w.x + w.y * kv_load(vb + d);
        }
    }
    if (single) {
        attend_own(kq, kv4);
    }
    if (row < step.n_tokens) {
        let obase = t * q4 + h * p.hd4;
        let inv = 1.0 / l;
        for (var d = 0u; d < p.hd4; d++) {
            O[obase + d] = acc[d] * inv;
        }
    }
}
