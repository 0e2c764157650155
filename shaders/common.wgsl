// Shared by every kernel: the per-step uniform, written once before each forward, and the
// weight-matrix layout.
struct Step {
    n_tokens: u32, // T: tokens in this batch
    pos: u32,      // absolute position of the batch's first token (= tokens already cached)
    row0: u32,     // first row of the final hidden state the LM head reads
    n_rows: u32,   // rows the LM head computes
}
@group(0) @binding(0) var<uniform> step: Step;

// Weight matrices are stored input-major, W[k, n] for y = x·W, in column panels: the columns
// (padded to a multiple of 8) are cut into panels of PANEL columns, and each panel is stored
// as a contiguous (K, width) row-major block. A kernel that walks k for a fixed set of
// columns therefore streams one contiguous block.
const PANEL: u32 = 128u;

// Eight consecutive weights of one row, as returned by `w8` in weights_*.wgsl.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Element offset of W[0, n] and the row stride for column n of a (K, np) matrix.
fn panel_base(n: u32, k_dim: u32, np: u32) -> vec2<u32> {
    let p0 = n - n % PANEL;
    let width = min(PANEL, np - p0);
    return vec2<u32>(p0 * k_dim + (n - p0), width);
}
