// Shared by every kernel: the per-step uniform, written once before each forward.
struct Step {
    n_tokens: u32, // T: tokens in this batch
    pos: u32,      // absolute position of the batch's first token (= tokens already cached)
    row0: u32,     // first row of the final hidden state the LM head reads
    n_rows: u32,   // rows the LM head computes
}
@group(0) @binding(0) var<uniform> step: Step;
