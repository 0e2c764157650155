// Weight access, f32 storage: a (N, Kp) row-major matrix, Kp = K rounded up to 4, zero padded.
@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>; // (N, Kp/4)

// Four consecutive weights starting at element 4*i.
fn w4(i: u32) -> vec4<f32> {
    return W[i];
}
