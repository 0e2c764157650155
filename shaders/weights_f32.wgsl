// Weight access, f32 storage: one texel = four floats W[k, n..n+4] (n a multiple of 4), as bits,
// at texel (k, n / 4): one texture row per group of 4 columns, so walking k reads contiguous
// memory.
// W: (np / 4, K) texels, np/4 rows of K, read with `texel` (texel_*.wgsl).

// Eight consecutive weights W[k, n..n+8], n a multiple of 8.
fn w8(k: u32, n: u32) -> W8 {
    let y = n >> 2u;
    return W8(bitcast<vec4<f32>>(texel(k, y)), bitcast<vec4<f32>>(texel(k, y + 1u)));
}

// One weight W[k, n].
fn w1(k: u32, n: u32) -> f32 {
    return bitcast<f32>(texel(k, n >> 2u)[n & 3u]);
}

// W[k..k+4, n..n+8], k a multiple of 4 and n of 8.
fn w4(k: u32, n: u32) -> W4 {
    return W4(w8(k, n), w8(k + 1u, n), w8(k + 2u, n), w8(k + 3u, n));
}
