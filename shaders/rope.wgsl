// Rotary position embedding, in place on the batch's queries and keys (GPT-NeoX, Llama: the
// "half-split" pairing HF applies). In each head the first 2·half dimensions are rotated in
// pairs (j, j + half) by the angle of the row's position (pos + t for one sequence, see row_pos) and frequency j:
//   x[j]        = x[j]·cos − x[j + half]·sin
//   x[j + half] = x[j + half]·cos + x[j]·sin
// The dimensions past 2·half (partial rotary) are left as they are. cos and sin come from a
// table computed on the CPU in f64 (scaling rules such as Llama 3's only change the table).
// One workgroup per (head, token): workgroup_id.x is the head, .y the batch row t; invocation
// j handles pairs j, j + 64, … for the query head and, when h < k_heads, the key head.
// Needs common.wgsl.
struct Params {
    ld: u32,       // row stride of QKV in floats (q, k and v of one token)
    head_dim: u32, // dimensions per head
    half: u32,     // pairs rotated per head (rotary dims / 2)
    q_heads: u32,  // query heads, at columns 0..q_heads·head_dim
    k_heads: u32,  // key heads, at columns k_col0..k_col0 + k_heads·head_dim
    k_col0: u32,   // first key column
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> QKV: array<f32>;  // (T, ld): q | k | v
@group(0) @binding(3) var<storage, read> table: array<vec2<f32>>; // (n_positions, half): (cos, sin)

fn rotate(base: u32, j: u32, cs: vec2<f32>) {
    let a = QKV[base + j];
    let b = QKV[base + j + p.half];
    QKV[base + j] = a * cs.x - b * cs.y;
    QKV[base + j + p.half] = b * cs.x + a * cs.y;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    if (t >= step.n_tokens) {
        return;
    }
    let row = t * p.ld;
    let angles = row_pos(t) * p.half;
    for (var j = li; j < p.half; j += 64u) {
        let cs = table[angles + j];
        if (h < p.q_heads) {
            rotate(row + h * p.head_dim, j, cs);
        }
        if (h < p.k_heads) {
            rotate(row + p.k_col0 + h * p.head_dim, j, cs);
        }
    }
}
