// Y = cap · tanh(Y / cap), in place on logits rows (Gemma 2's `final_logit_softcapping`). The
// argument is clamped to ±15, where tanh is ±1 in f32, so no implementation overflows.
// One invocation per logit: global_invocation_id.x is the column, .y the row. Needs common.wgsl.
struct Params {
    n: u32,   // columns per row (the vocabulary)
    cap: f32, // the cap
    batch: u32, // 1: every row of the batch (step.n_tokens rows), 0: the LM head's (step.n_rows)
    _pad: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>; // (rows, n)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let rows = select(step.n_rows, step.n_tokens, p.batch == 1u);
    if (gid.x >= p.n || gid.y >= rows) {
        return;
    }
    let i = gid.y * p.n + gid.x;
    Y[i] = p.cap * tanh(clamp(Y[i] / p.cap, -15.0, 15.0));
}
