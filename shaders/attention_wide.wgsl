// Causal multi-head attention over the KV cache: the cooperative variant of attention.wgsl for
// hardware GPUs. One workgroup of 64 per (head, query): workgroup_id.x is the head, .y the
// batch row t, whose keys are first_key(row_pos(t))..=row_pos(t) of its cache slot
// (row_slot(t)): all keys before it or its sliding window's, soft-capped where the model caps. Keys go in chunks of up to 1024: each invocation
// scores every 64th key of the chunk into workgroup memory, the workgroup takes the chunk's
// maximum and sum (online softmax across chunks), then invocation (g, d) accumulates
// dimension quad d of the values of keys g, g + G, …, and the G partial outputs are summed at
// the end: d is the low `dq_bits` bits of the invocation index (2^dq_bits ≥ head_dim / 4) and
// g the rest, so G = 64 >> dq_bits. head_dim must be a multiple of 4, ≤ 256.
// Query head h reads key/value head h / group (grouped-query attention; group = 1 is plain
// multi-head attention).
// For a single-token batch (decode) the workgroup first stores its key/value head's key and
// value in the cache itself, so the forward pass needs no kv_store dispatch then (with
// grouped-query attention the group's workgroups store the same values to the same place,
// each before its own reads); a batch's keys are needed by other workgroups and are stored by
// kv_store.wgsl beforehand.
// Needs common.wgsl, attention_params.wgsl, one kv_*.wgsl and workgroup_reduce.wgsl.
const CHUNK: u32 = 1024u;

var<workgroup> q: array<vec4<f32>, 64>;    // (head_dim / 4) this query, scaled
var<workgroup> prob: array<f32, CHUNK>;    // (CHUNK) scores, then exp(score - max), of a chunk
var<workgroup> part: array<vec4<f32>, 64>; // (64) each invocation's partial output

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    let q4 = p.q_c / 4u;
    let kv4 = p.kv_c / 4u;
    let head = h * p.hd4;
    let kvh = (h / p.group) * p.hd4; // group ≥ 1, checked on the host
    if (li < p.hd4) {
        q[li] = QKV[t * (q4 + 2u * kv4) + head + li] * p.scale;
    }
    let base = row_slot(t) * 2u * p.v_offset; // this row's cache slot
    if (step.n_tokens == 1u) {
        if (li < p.hd4) {
            let dst = base + cache_row(row_pos(0u)) * kv4 + kvh + li;
            kv_store(dst, QKV[q4 + kvh + li]);
            kv_store(p.v_offset + dst, QKV[q4 + kv4 + kvh + li]);
        }
        storageBarrier();
    }
    workgroupBarrier();
    let first = first_key(row_pos(t)); // the sliding window's first key, else 0
    let n_keys = row_pos(t) + 1u - first;
    let groups = 64u >> p.dq_bits;
    let g = li >> p.dq_bits;
    let d = li & ((1u << p.dq_bits) - 1u);
    var m = -3.0e38; // running max of the scores
    var l = 0.0;     // running sum of exp(score - m)
    var acc = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < n_keys; c0 += CHUNK) {
        let len = min(CHUNK, n_keys - c0);
        var mx = -3.0e38;
        for (var j = li; j < len; j += 64u) {
            let kb = base + cache_row(first + c0 + j) * kv4 + kvh;
            var s = 0.0;
            for (var e = 0u; e < p.hd4; e++) {
                s += dot(q[e], kv_load(kb + e));
            }
            s = capped(s);
            prob[j] = s;
            mx = max(mx, s);
        }
        let m_new = max(m, wg_max(mx, li, 64u));
        let corr = exp(m - m_new);
        var sum = 0.0;
        for (var j = li; j < len; j += 64u) {
            let e = exp(prob[j] - m_new);
            prob[j] = e;
            sum += e;
        }
        l = l * corr + wg_sum(sum, li, 64u);
        m = m_new;
        acc *= corr;
        if (d < p.hd4) {
            // Four value rows in flight per step, then the remainder one at a time.
            let vb = base + p.v_offset + kvh + d;
            let k0 = first + c0; // position of the chunk's first key
            var j = g;
            for (; j + 3u * groups < len; j += 4u * groups) {
                let j1 = j + groups;
                let j2 = j1 + groups;
                let j3 = j2 + groups;
                let v0 = kv_load(vb + cache_row(k0 + j) * kv4);
                let v1 = kv_load(vb + cache_row(k0 + j1) * kv4);
                let v2 = kv_load(vb + cache_row(k0 + j2) * kv4);
                let v3 = kv_load(vb + cache_row(k0 + j3) * kv4);
                acc += prob[j] * v0 + prob[j1] * v1 + prob[j2] * v2 + prob[j3] * v3;
            }
            for (; j < len; j += groups) {
                acc += prob[j] * kv_load(vb + cache_row(k0 + j) * kv4);
            }
        }
        workgroupBarrier(); // the chunk's weights are read before the next chunk's scores
    }
    part[li] = acc;
    workgroupBarrier();
    if (li < p.hd4) {
        var o = vec4<f32>(0.0);
        for (var i = 0u; i < groups; i++) {
            o += part[(i << p.dq_bits) + li];
        }
        O[t * q4 + head + li] = o / l;
    }
}
