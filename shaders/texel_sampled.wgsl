// The weight texture as a sampled texture (the cooperative family): `texel(x, y)` is the
// rgba32uint texel at column x, row y; the weights_*.wgsl file of the storage format gives the
// layout. GPUs read it through the texture cache.
@group(0) @binding(2) var W: texture_2d<u32>; // (texels per row, rows)

fn texel(x: u32, y: u32) -> vec4<u32> {
    return textureLoad(W, vec2<u32>(x, y), 0);
}
