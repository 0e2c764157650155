// Shared by argmax_wide.wgsl and argmax_pick.wgsl (greedy decoding): parameters, the non-finite marker and the
// rule that merges candidates. A candidate is (value, index): index V means "saw nothing",
// NON_FINITE that a NaN or infinity was seen (found from the bits: WGSL lets compilers assume
// that floats are finite, so comparisons cannot be trusted to see them).
const NON_FINITE: u32 = 0xffffffffu;
struct Params {
    v: u32,     // values in the row (vocab_size)
    lanes: u32, // L: candidates left by the first half
    _pad: vec2<u32>,
}
@group(0) @binding(1) var<uniform> p: Params;

fn is_finite_bits(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Whether candidate (vb, b) replaces (va, a): a non-finite one always does and is never
// replaced; otherwise the larger value, then the smaller index, wins over having seen nothing.
fn replaces(va: f32, a: u32, vb: f32, b: u32) -> bool {
    if (a == NON_FINITE || b == NON_FINITE) {
        return b == NON_FINITE;
    }
    if (b >= p.v) {
        return false;
    }
    return a >= p.v || vb > va || (vb == va && b < a);
}
