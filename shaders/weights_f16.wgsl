// Weight access, f16 storage: a (N, Kp) row-major matrix of IEEE halves packed two per u32,
// Kp = K rounded up to 4, zero padded. Arithmetic stays f32.
@group(0) @binding(2) var<storage, read> W: array<vec2<u32>>; // (N, Kp/4), 4 halves each

// Four consecutive weights starting at element 4*i.
fn w4(i: u32) -> vec4<f32> {
    let p = W[i];
    return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}
