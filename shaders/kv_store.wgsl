// Appends this batch's keys and values to the layer's cache at each row's position and slot
// (positions pos..pos+T of one slot, or one token per sequence, see row_pos / row_slot). The
// cache holds only the key/value heads (grouped-query attention: fewer than the query heads).
// One invocation per 4 features of a key row (kv_c is a multiple of 4). Needs common.wgsl and one kv_*.wgsl.
struct Params {
    kv_c: u32,     // features of a key row: n_kv_heads · head_dim
    v_offset: u32, // where the values start in KV, in vec4 units (n_ctx · kv_c / 4)
    q_c: u32,      // features of a query row: n_heads · head_dim (keys start there in QKV)
    row: u32,      // row stride of QKV: q_c + 2 · kv_c
    rows: u32,     // positions a slot holds: position j in row j % rows (see attention_params.wgsl)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> QKV: array<vec4<f32>>;           // (T, row): q | k | v
// @binding(3): the cache KV, declared by kv_f32.wgsl or kv_f16.wgsl with its accessors.

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    let kv4 = p.kv_c / 4u;
    if (c >= kv4 || t >= step.n_tokens) {
        return;
    }
    let src = t * (p.row / 4u) + p.q_c / 4u;
    let dst = row_slot(t) * 2u * p.v_offset + (row_pos(t) % p.rows) * kv4 + c;
    kv_store(dst, QKV[src + c]);
    kv_store(p.v_offset + dst, QKV[src + kv4 + c]);
}
