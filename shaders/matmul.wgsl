// Y = act(X · Wᵀ + b) (+ Y when accumulating): every linear layer and the LM head.
// Needs common.wgsl, activations.wgsl and one weights_*.wgsl (binding 2, W: (N, Kp)).
// Each invocation computes a 4×4 block (4 rows of X × 4 output columns) from vec4 weight loads,
// without workgroup memory or barriers (fast on software adapters, fine on GPUs).
struct Params {
    k: u32,        // input features K
    n: u32,        // output features N (rows of W)
    kp4: u32,      // W row stride in vec4 (Kp / 4)
    ld_y: u32,     // row stride of Y
    y_col0: u32,   // first column of Y written (LM-head chunks)
    act: u32,      // ACT_* epilogue
    accumulate: u32, // 1: Y += result (residual), 0: Y = result
    lm_rows: u32,  // 1: rows come from step.row0 / step.n_rows (LM head), 0: rows = step.n_tokens
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> X: array<f32>;        // (rows, K)
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (rows, ld_y)

fn x4(row: u32, k: u32) -> vec4<f32> {
    let base = row * p.k + k;
    if (k + 4u <= p.k) {
        return vec4<f32>(X[base], X[base + 1u], X[base + 2u], X[base + 3u]);
    }
    // Tail of a row whose length is not a multiple of 4 (W is zero padded there).
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) { v[j] = X[base + j]; }
    }
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var rows = step.n_tokens;
    var xrow0 = 0u;
    if (p.lm_rows == 1u) {
        rows = step.n_rows;
        xrow0 = step.row0;
    }
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (n0 >= p.n || m0 >= rows) {
        return;
    }
    // Out-of-range rows/columns of the block load a valid neighbour; their results are dropped.
    let r = vec4<u32>(min(m0, rows - 1u), min(m0 + 1u, rows - 1u), min(m0 + 2u, rows - 1u), min(m0 + 3u, rows - 1u)) + xrow0;
    let wrow = vec4<u32>(n0, min(n0 + 1u, p.n - 1u), min(n0 + 2u, p.n - 1u), min(n0 + 3u, p.n - 1u)) * p.kp4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < p.kp4; k4++) {
        let k = k4 * 4u;
        let w0 = w4(wrow.x + k4);
        let w1 = w4(wrow.y + k4);
        let w2 = w4(wrow.z + k4);
        let w3 = w4(wrow.w + k4);
        let xa = x4(r.x, k);
        let xb = x4(r.y, k);
        let xc = x4(r.z, k);
        let xd = x4(r.w, k);
        acc0 += vec4<f32>(dot(xa, w0), dot(xa, w1), dot(xa, w2), dot(xa, w3));
        acc1 += vec4<f32>(dot(xb, w0), dot(xb, w1), dot(xb, w2), dot(xb, w3));
        acc2 += vec4<f32>(dot(xc, w0), dot(xc, w1), dot(xc, w2), dot(xc, w3));
        acc3 += vec4<f32>(dot(xd, w0), dot(xd, w1), dot(xd, w2), dot(xd, w3));
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + i;
        if (m >= rows) { break; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + j;
            if (n >= p.n) { break; }
            let v = activate(accs[i][j] + B[n], p.act);
            let idx = m * p.ld_y + p.y_col0 + n;
            if (p.accumulate == 1u) {
                Y[idx] = Y[idx] + v;
            } else {
                Y[idx] = v;
            }
        }
    }
}
