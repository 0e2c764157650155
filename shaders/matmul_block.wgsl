// Y = act(X·W + b) (+ Y) for one block of 8 rows of a batch whose X rows are read through a
// uniform binding: the prefill path when 8 rows of X fit 64 KiB (K ≤ 2048). Same tile as
// matmul.wgsl; on lavapipe uniform-buffer loads are unrolled, branch-free lane loads while
// storage loads loop over the SIMD lanes with a bounds branch per component.
// Needs common.wgsl, activations.wgsl, matmul_params.wgsl (binding 1), one weights_*.wgsl
// (binding 2, W: (K, np)), one lanes_*.wgsl, epilogue.wgsl, one store_*.wgsl (binding 5, Y:
// (rows, ld_y)) and matmul_tile.wgsl. K must be a multiple of 4.
@group(0) @binding(3) var<uniform> X: array<vec4<f32>, 4096>;   // (8, K) rows m0..m0+8, 64 KiB window
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros

// The values the lanes share (lanes_*.wgsl).
fn x_value(i: u32) -> vec4<f32> { return X[i]; }

// The only early return is uniform across the workgroup: the lanes share loads.
@compute @workgroup_size(16)
fn main(ids: Ids) {
    let rows = step.n_tokens;
    let n0 = (ids.wg.x * 16u + ids.lid.x) * 8u;
    let m0 = p.m0;
    if (m0 >= rows) {
        return;
    }
    // Row offsets into the window in vec4 units; rows past the end repeat the last row.
    let k4 = p.k / 4u;
    let last = rows - 1u - m0;
    var xo: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        xo[i] = min(i, last) * k4;
    }
    matmul_tile(xo, min(lane(ids), last) * k4, m0, n0, rows);
}
