// Y = act(X·W + b) (+ Y when accumulating) for batches of rows (prefill, perplexity).
// Needs common.wgsl, activations.wgsl, matmul_params.wgsl (binding 1), one weights_*.wgsl
// (binding 2, W: (K, np)), one lanes_*.wgsl, epilogue.wgsl, one store_*.wgsl (binding 5, Y:
// (rows, ld_y)) and matmul_tile.wgsl. Each invocation computes an 8×8 block: 8 rows (the same
// for the whole workgroup) × 8 adjacent columns (adjacent across invocations). No workgroup
// memory or barriers. K must be a multiple of 4.
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;  // (rows, K)
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros

// The values the lanes share (lanes_*.wgsl).
fn x_value(i: u32) -> vec4<f32> { return X[i]; }

// The only early return is uniform across the workgroup: the lanes share loads.
@compute @workgroup_size(16)
fn main(ids: Ids) {
    var rows = step.n_tokens;
    var xrow0 = 0u;
    if (p.lm_rows == 1u) {
        rows = step.n_rows;
        xrow0 = step.row0;
    }
    let n0 = (ids.wg.x * 16u + ids.lid.x) * 8u;
    let m0 = ids.wg.y * 8u;
    if (m0 >= rows) {
        return;
    }
    // Row offsets into X in vec4 units; rows past the end repeat the last row (results dropped).
    let k4 = p.k / 4u;
    var xo: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        xo[i] = (xrow0 + min(m0 + i, rows - 1u)) * k4;
    }
    let own_xo = (xrow0 + min(m0 + lane(ids), rows - 1u)) * k4;
    matmul_tile(xo, own_xo, m0, n0, rows);
}
