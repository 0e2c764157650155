// X[t] += wpe[row_pos(t)] (pos + t for one sequence): adds learned position embeddings to rows that are already there
// (OPT's layout with project_in, where the token embedding is projected first).
// Needs common.wgsl.
struct Params {
    c: u32, // features C
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> wpe: array<f32>;      // (n_positions, C)
@group(0) @binding(3) var<storage, read_write> X: array<f32>;  // (T, C)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || c >= p.c) {
        return;
    }
    X[t * p.c + c] += wpe[row_pos(t) * p.c + c];
}
