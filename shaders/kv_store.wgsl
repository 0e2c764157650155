// Appends this batch's keys and values to the layer's cache at positions pos..pos+T.
// Needs common.wgsl.
struct Params {
    c: u32, // features C
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> QKV: array<f32>;           // (T, 3C): q | k | v
@group(0) @binding(3) var<storage, read_write> Kc: array<f32>;      // (n_positions, C)
@group(0) @binding(4) var<storage, read_write> Vc: array<f32>;      // (n_positions, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= p.c || t >= step.n_tokens) {
        return;
    }
    let src = t * 3u * p.c;
    let dst = (step.pos + t) * p.c + c;
    Kc[dst] = QKV[src + p.c + c];
    Vc[dst] = QKV[src + 2u * p.c + c];
}
