// Weight access, f32 storage (panel layout, see common.wgsl).
@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>;

// Eight consecutive weights starting at element `off` (a multiple of 8).
fn w8(off: u32) -> W8 {
    let i = off >> 2u;
    return W8(W[i], W[i + 1u]);
}

// One weight.
fn w1(off: u32) -> f32 {
    return W[off >> 2u][off & 3u];
}
