// Weight access, f16 storage: one texel = eight IEEE halves W[k, n..n+8] (n a multiple of 8),
// two per u32. Arithmetic stays f32.
@group(0) @binding(2) var W: texture_2d<u32>; // (K, np / 8) texels

// Eight consecutive weights W[k, n..n+8], n a multiple of 8.
fn w8(k: u32, n: u32) -> W8 {
    let q = textureLoad(W, vec2<u32>(n >> 3u, k), 0);
    return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

// One weight W[k, n].
fn w1(k: u32, n: u32) -> f32 {
    let word = textureLoad(W, vec2<u32>(n >> 3u, k), 0)[(n >> 1u) & 3u];
    return unpack2x16float(word)[n & 1u];
}
