// Y = act(X·W + b) (+ Y when accumulating) for batches of rows (prefill, perplexity).
// Needs common.wgsl, activations.wgsl and one weights_*.wgsl (binding 2, W: (K, np) panels).
// Needs matmul_tile.wgsl too. Each invocation computes an 8×8 block: 8 rows (the same for the
// whole workgroup) × 8 adjacent columns (adjacent across invocations, so W streams through each
// panel). On lavapipe every storage load costs a loop over the SIMD lanes, so the tile issues
// few, wide loads. No workgroup memory or barriers. K must be a multiple of 4.
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;  // (rows, K)
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (rows, ld_y)

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var rows = step.n_tokens;
    var xrow0 = 0u;
    if (p.lm_rows == 1u) {
        rows = step.n_rows;
        xrow0 = step.row0;
    }
    let n0 = (wg.x * 16u + lid.x) * 8u;
    let m0 = wg.y * 8u;
    if (n0 >= p.n || m0 >= rows) {
        return;
    }
    // Row offsets into X in vec4 units; rows past the end repeat the last row (results dropped).
    let k4 = p.k / 4u;
    var xo: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        xo[i] = (xrow0 + min(m0 + i, rows - 1u)) * k4;
    }
    matmul_tile(xo, m0, n0, rows);
}

fn x4(i: u32) -> vec4<f32> {
    return X[i];
}
