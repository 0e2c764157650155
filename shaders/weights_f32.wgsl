// Weight access, f32 storage: one texel = four floats W[k, n..n+4] (n a multiple of 4), as bits.
@group(0) @binding(2) var W: texture_2d<u32>; // (K, np / 4) texels

// Eight consecutive weights W[k, n..n+8], n a multiple of 8.
fn w8(k: u32, n: u32) -> W8 {
    let x = n >> 2u;
    return W8(bitcast<vec4<f32>>(textureLoad(W, vec2<u32>(x, k), 0)), bitcast<vec4<f32>>(textureLoad(W, vec2<u32>(x + 1u, k), 0)));
}

// One weight W[k, n].
fn w1(k: u32, n: u32) -> f32 {
    return bitcast<f32>(textureLoad(W, vec2<u32>(n >> 2u, k), 0)[n & 3u]);
}
