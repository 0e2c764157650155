// Y = act(X·W + b) (+ Y) for one block of 8 rows of a batch whose X rows are read through a
// uniform binding: the prefill path when 8 rows of X fit 64 KiB (K ≤ 2048). Same tile as
// matmul.wgsl, but on lavapipe a uniform load whose address is the same for every invocation
// is one scalar load, while storage loads loop over the SIMD lanes: about twice as fast there.
// Needs common.wgsl, activations.wgsl, one weights_*.wgsl (binding 2, W: (K, np) panels) and
// matmul_tile.wgsl. K must be a multiple of 4.
@group(0) @binding(3) var<uniform> X: array<vec4<f32>, 4096>;   // (8, K) rows m0..m0+8, 64 KiB window
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (rows, ld_y)

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = step.n_tokens;
    let n0 = (wg.x * 16u + lid.x) * 8u;
    let m0 = p.m0;
    if (n0 >= p.n || m0 >= rows) {
        return;
    }
    // Row offsets into the window in vec4 units; rows past the end repeat the last row.
    let k4 = p.k / 4u;
    let last = rows - 1u - m0;
    var xo: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        xo[i] = min(i, last) * k4;
    }
    matmul_tile(xo, m0, n0, rows);
}

fn x4(i: u32) -> vec4<f32> {
    return X[i];
}
