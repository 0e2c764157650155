// Causal multi-head attention for a batch of sequences (batched decode, `step.per_row` = 1):
// the barrier-free kernel for rows that belong to different sequences, each with its own
// cache slot and position, so the rows share no keys (attention.wgsl shares the loads of 8
// queries of one sequence). Row t's query attends to keys 0..=row_pos(t) of slot row_slot(t).
// One invocation per (row, query head): workgroup_id.y is the row, the 8 invocations of a
// workgroup are 8 consecutive heads of it; an online (single-pass) softmax, no workgroup
// memory. Query head h reads key/value head h / group. Keys before the row's sliding window
// (first_key) are skipped, scores soft-capped where the model caps. The arithmetic is attention.wgsl's, in
// the same order, so a sequence's decode gives the same bits on either kernel.
// A single-row step stores its key and value in the cache here, as attention.wgsl does (the
// forward pass launches no kv_store then), and reads that last key and value from QKV.
// head_dim must be a multiple of 4, ≤ 256. Needs common.wgsl, attention_params.wgsl, one kv_*.wgsl and online_softmax.wgsl.

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wg.x * 8u + lid.x;
    let t = wg.y;
    if (h >= p.n_head || t >= step.n_tokens) {
        return;
    }
    let q4 = p.q_c / 4u;
    let kv4 = p.kv_c / 4u;
    let qbase = t * (q4 + 2u * kv4) + h * p.hd4;
    // group ≥ 1, checked on the host; the slot's keys and values start at its base
    let kvh = row_slot(t) * 2u * p.v_offset + (h / p.group) * p.hd4;
    for (var d = 0u; d < p.hd4; d++) {
        q[d] = QKV[qbase + d] * p.scale;
        acc[d] = vec4<f32>(0.0);
    }
    m = -3.0e38;
    l = 0.0;
    let last = row_pos(t);
    let hd8 = p.hd4 / 8u * 8u; // dimensions summed 8 vec4 at a time, as attention.wgsl
    // A single row: its key and value from QKV (stored once per key/value head), the cache
    // for the keys before it.
    let single = step.n_tokens == 1u;
    let kq = t * (q4 + 2u * kv4) + q4 + (h / p.group) * p.hd4;
    if (single && h % p.group == 0u) {
        store_own(cache_row(last) * kv4 + kvh, kq, kv4);
    }
    let cached = last + 1u - u32(single);
    for (var j = first_key(last); j < cached; j++) {
        let kb = cache_row(j) * kv4 + kvh;
        var s = 0.0;
        for (var d = 0u; d < hd8; d += 8u) {
            let i = kb + d;
            s += dot(q[d], kv_load(i)) + dot(q[d + 1u], kv_load(i + 1u))
                + dot(q[d + 2u], kv_load(i + 2u)) + dot(q[d + 3u], kv_load(i + 3u))
                + dot(q[d + 4u], kv_load(i + 4u)) + dot(q[d + 5u], kv_load(i + 5u))
                + dot(q[d + 6u], kv_load(i + 6u)) + dot(q[d + 7u], kv_load(i + 7u));
        }
        for (var d = hd8; d < p.hd4; d++) {
            s += dot(q[d], kv_load(kb + d));
        }
        let w = softmax_step(s, j <= last);
        let vb = p.v_offset + kb;
        for (var d = 0u; d < hd8; d += 8u) {
            let i = vb + d;
            acc[d] = acc[d] * w.x + w.y * kv_load(i);
            acc[d + 1u] = acc[d + 1u] * w.x + w.y * kv_load(i + 1u);
            acc[d + 2u] = acc[d + 2u] * w.x + w.y * kv_load(i + 2u);
            acc[d + 3u] = acc[d + 3u] * w.x + w.y * kv_load(i + 3u);
            acc[d + 4u] = acc[d + 4u] * w.x + w.y * kv_load(i + 4u);
            acc[d + 5u] = acc[d + 5u] * w.x + w.y * kv_load(i + 5u);
            acc[d + 6u] = acc[d + 6u] * w.x + w.y * kv_load(i + 6u);
            acc[d + 7u] = acc[d + 7u] * w.x + w.y * kv_load(i + 7u);
        }
        for (var d = hd8; d < p.hd4; d++) {
            acc[d] = acc[d] * w.x + w.y * kv_load(vb + d);
        }
    }
    if (single) {
        attend_own(kq, kv4);
    }
    let obase = t * q4 + h * p.hd4;
    let inv = 1.0 / l;
    for (var d = 0u; d < p.hd4; d++) {
        O[obase + d] = acc[d] * inv;
    }
}
