// Weight access, f16 storage: one texel = eight IEEE halves W[k, n..n+8] (n a multiple of 8),
// two per u32, at texel (k, n / 8): one texture row per group of 8 columns, so walking k reads
// contiguous memory. Arithmetic stays f32.
// W: (np / 8, K) texels, np/8 rows of K, read with `texel` (texel_*.wgsl).

// Eight consecutive weights W[k, n..n+8], n a multiple of 8.
fn w8(k: u32, n: u32) -> W8 {
    let q = texel(k, n >> 3u);
    return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

// One weight W[k, n].
fn w1(k: u32, n: u32) -> f32 {
    let word = texel(k, n >> 3u)[(n >> 1u) & 3u];
    return unpack2x16float(word)[n & 1u];
}

// W[k..k+4, n..n+8], k a multiple of 4 and n of 8.
fn w4(k: u32, n: u32) -> W4 {
    return W4(w8(k, n), w8(k + 1u, n), w8(k + 2u, n), w8(k + 3u, n));
}
