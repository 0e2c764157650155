// Appends this batch's keys and values to the layer's cache at positions pos..pos+T.
// One invocation per 4 features (C is a multiple of 4). Needs common.wgsl.
struct Params {
    c: u32,        // features C
    v_offset: u32, // where the values start in KV, in vec4 units (n_positions * C / 4)
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> QKV: array<vec4<f32>>;           // (T, 3C): q | k | v
@group(0) @binding(3) var<storage, read_write> KV: array<vec4<f32>>;      // (2, n_positions, C): keys, values

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    let c4 = p.c / 4u;
    if (c >= c4 || t >= step.n_tokens) {
        return;
    }
    let src = t * 3u * c4;
    let dst = (step.pos + t) * c4 + c;
    KV[dst] = QKV[src + c4 + c];
    KV[p.v_offset + dst] = QKV[src + 2u * c4 + c];
}
