// Weight access, f16 storage (panel layout, see common.wgsl): IEEE halves packed two per u32,
// eight per vec4<u32>, so one load brings eight weights. Arithmetic stays f32.
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;

// Eight consecutive weights starting at element `off` (a multiple of 8).
fn w8(off: u32) -> W8 {
    let q = W[off >> 3u];
    return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

// One weight.
fn w1(off: u32) -> f32 {
    let word = W[off >> 3u][(off >> 1u) & 3u];
    return unpack2x16float(word)[off & 1u];
}
