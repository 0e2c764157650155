// The KV cache in f16 (`--kv f16`, the default): 4 features packed in two u32 (IEEE half each,
// `pack2x16float`, round to nearest even), half the memory and the bytes attention reads of
// kv_f32.wgsl; arithmetic stays f32. Indices are in units of 4 features.
@group(0) @binding(3) var<storage, read_write> KV: array<vec2<u32>>; // (slots, 2, n_ctx, kv_c): keys, values

fn kv_load(i: u32) -> vec4<f32> {
    let h = KV[i];
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}
fn kv_store(i: u32, v: vec4<f32>) { KV[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw)); }
// A key or value as the cache keeps it: a decode step reads its own key and value from QKV,
// rounded like the entry it stores, so it has the bits a later step reads back.
fn kv_round(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(pack2x16float(v.xy)), unpack2x16float(pack2x16float(v.zw)));
}
