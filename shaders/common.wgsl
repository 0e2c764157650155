// Shared by every kernel: the per-step uniform, written once before each forward, and the
// weight-matrix layout.
const MAX_ROWS: u32 = 64u; // rows of a batch of sequences (`per_row`)
struct Step {
    n_tokens: u32, // T: tokens in this batch
    pos: u32,      // absolute position of the batch's first token (= tokens already cached)
    row0: u32,     // first row of the final hidden state the LM head reads
    n_rows: u32,   // rows the LM head computes
    // 0: the batch is one sequence's tokens at positions pos..pos+T of KV-cache slot `slot`.
    // 1: a batch of sequences (batched decode): row t is one token at position rows[t].x of
    //    cache slot rows[t].y; T ≤ MAX_ROWS.
    per_row: u32,
    slot: u32,
    _pad0: u32,
    _pad1: u32,
    rows: array<vec4<u32>, MAX_ROWS>, // (MAX_ROWS) per_row: (position, cache slot, -, -)
}
@group(0) @binding(0) var<uniform> step: Step;

// The position of batch row t.
fn row_pos(t: u32) -> u32 {
    if (step.per_row == 1u) {
        return step.rows[t].x;
    }
    return step.pos + t;
}

// The KV-cache slot of batch row t: a layer's cache is (slots, 2, n_positions, kv_c).
fn row_slot(t: u32) -> u32 {
    if (step.per_row == 1u) {
        return step.rows[t].y;
    }
    return step.slot;
}

// Weight matrices W[k, n] for y = x·W live in an rgba32uint texture, 16 bytes per texel, one
// texture row per group of columns (8 f16 or 4 f32 weights per texel; block formats: see
// weights_quant.wgsl): texel (k, r) holds
// W[k, r·g..r·g+g], so a kernel walking k for fixed columns reads contiguous memory. N is
// padded to a multiple of 8; the weights_*.wgsl file of the storage dtype unpacks, reading
// texels with `texel(x, y)` (texel_sampled.wgsl or texel_storage.wgsl, per kernel family).
// Textures, not storage buffers, because a texel load brings 16 bytes per invocation with one
// vector load on every adapter, while lavapipe turns each storage-buffer load into a loop over
// its SIMD lanes (about 3x slower there).

// Eight consecutive weights of one row, as returned by `w8` in weights_*.wgsl.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Four rows of eight, W[k..k+4, n..n+8], as returned by `w4` (the barrier-free matmuls' step).
struct W4 {
    r0: W8,
    r1: W8,
    r2: W8,
    r3: W8,
}
