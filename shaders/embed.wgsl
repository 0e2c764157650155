// X[t] = wte[token[t]]·scale (+ wpe[pos_t], pos_t = row_pos(t)): token embedding gather, plus the learned position
// where the model has one (`positions` = 1).
// wte is stored transposed for the LM head, as a (C, V) weight matrix, possibly split by
// vocabulary into several textures; each dispatch covers tokens [row_begin, row_end).
// Needs common.wgsl and one weights_*.wgsl (binding 2, W = this chunk: (C, np)).
struct Params {
    c: u32,         // features C
    row_begin: u32, // first token id held by this chunk
    row_end: u32,   // one past the last
    positions: u32, // 1: add wpe[pos + t]; 0: wpe is a placeholder and unread
    scale: f32,     // the embedding's multiplier (Gemma: √C in the checkpoint's dtype), else 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;   // (T)
@group(0) @binding(4) var<storage, read> wpe: array<f32>;      // (n_positions, C)
@group(0) @binding(5) var<storage, read_write> X: array<f32>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || c >= p.c) {
        return;
    }
    let tok = tokens[t];
    if (tok < p.row_begin || tok >= p.row_end) {
        return;
    }
    var v = w1(c, tok - p.row_begin) * p.scale;
    if (p.positions == 1u) {
        v += wpe[row_pos(t) * p.c + c];
    }
    X[t * p.c + c] = v;
}
