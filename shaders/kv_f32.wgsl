// The KV cache in f32 (`--kv f32`): one vec4<f32> per 4 features. Every kernel that reads or
// writes the cache does it through these functions, so the same kernels serve both precisions
// (kv_f16.wgsl is the other). Indices are in units of 4 features.
@group(0) @binding(3) var<storage, read_write> KV: array<vec4<f32>>; // (slots, 2, n_ctx, kv_c): keys, values

fn kv_load(i: u32) -> vec4<f32> { return KV[i]; }
fn kv_store(i: u32, v: vec4<f32>) { KV[i] = v; }
// A key or value as the cache keeps it (exact in f32).
fn kv_round(v: vec4<f32>) -> vec4<f32> { return v; }
