// Parameters and bindings of every attention kernel (attention.wgsl, attention_rows.wgsl,
// attention_decode.wgsl, attention_wide.wgsl): one layout, `Params` in
// src/kernels/attention.rs.
struct Params {
    q_c: u32,      // query features: n_head · head_dim
    n_head: u32,   // query heads
    hd4: u32,      // head_dim / 4
    scale: f32,    // 1/sqrt(head_dim), or 1 when the model does not scale
    v_offset: u32, // where a slot's values start after its keys, in vec4 units (n_ctx · kv_c / 4)
    dq_bits: u32,  // attention_wide.wgsl: log2 of the smallest power of two ≥ hd4
    kv_c: u32,     // key/value features: n_kv_heads · head_dim
    group: u32,    // query heads per key/value head (1 without grouped-query attention)
    window: u32,   // keys a query sees: the last `window` positions (0xffffffff: all of them)
    softcap: f32,  // scores become softcap·tanh(score / softcap) when > 0 (Gemma 2)
    rows: u32,     // positions a slot holds: position j lives in row j % rows (a ring when
                   // rows < n_ctx: a sliding-window layer keeps only its last positions)
    _pad: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> QKV: array<vec4<f32>>;      // (T, q_c + 2·kv_c): q | k | v
// The first key the query at position `last` sees (0 without a sliding window).
fn first_key(last: u32) -> u32 {
    return select(0u, last + 1u - p.window, last + 1u > p.window);
}

// The cache row of position j (see `rows`). Global layers (rows = the context) never wrap, so
// they skip the division.
fn cache_row(j: u32) -> u32 {
    if (j < p.rows) {
        return j;
    }
    return j % p.rows;
}

// A score q·k·scale after the model's soft-capping, if any.
fn capped(s: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0)); // tanh(±15) is ±1 in f32
    }
    return s;
}
// @binding(3): the cache KV, declared by kv_f32.wgsl or kv_f16.wgsl with its accessors.
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;  // (T, q_c)
