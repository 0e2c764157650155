// The weight texture as a read-only storage texture (the barrier-free family): `texel(x, y)`
// is the rgba32uint texel at column x, row y; the weights_*.wgsl file of the storage format
// gives the layout. On lavapipe an image load is an address computation and one 16-byte load
// per lane, while a sampled texture's textureLoad calls a fetch routine that reads the mip
// level's offsets and strides per lane (decode: Q8_0 +34%, Q4_0 +19%; docs/benchmarks.md).
@group(0) @binding(2) var W: texture_storage_2d<rgba32uint, read>; // (texels per row, rows)

fn texel(x: u32, y: u32) -> vec4<u32> {
    return textureLoad(W, vec2<u32>(x, y));
}
