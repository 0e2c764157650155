// X[t] = wte[token[t]] + wpe[pos + t]: token embedding gather plus learned position.
// wte may be split by vocabulary rows over several buffers; each dispatch covers rows
// [row_begin, row_end) and skips tokens outside them.
// Needs common.wgsl and one weights_*.wgsl (binding 2, W = this chunk of wte: (rows, Cp)).
struct Params {
    c: u32,         // features C
    cp4: u32,       // wte row stride in vec4
    row_begin: u32, // first vocabulary row held by this chunk
    row_end: u32,   // one past the last
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;   // (T)
@group(0) @binding(4) var<storage, read> wpe: array<f32>;      // (n_positions, C)
@group(0) @binding(5) var<storage, read_write> X: array<f32>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || c4 >= p.cp4) {
        return;
    }
    let tok = tokens[t];
    if (tok < p.row_begin || tok >= p.row_end) {
        return;
    }
    let w = w4((tok - p.row_begin) * p.cp4 + c4);
    let prow = (step.pos + t) * p.c;
    for (var j = 0u; j < 4u; j++) {
        let c = c4 * 4u + j;
        if (c < p.c) {
            X[t * p.c + c] = w[j] + wpe[prow + c];
        }
    }
}
