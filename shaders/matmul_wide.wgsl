// Y = act(X·W + b) (+ Y) for batches of rows (prefill, perplexity): the cooperative variant of
// matmul.wgsl for hardware GPUs. A workgroup of 16×16 computes a 64×64 tile of Y, each
// invocation 4 rows × 4 columns in registers. Per step of 16 k the workgroup stages X[64 rows,
// 16 k] and W[16 k, 64 columns] in workgroup memory (one k of 4 rows of X per invocation, one
// texel group of W per invocation of the first half), then every invocation does 256 FMAs from
// it. Every workgroup-memory write is a whole vec4 (writes to components of one vector by
// different invocations would race).
// Needs common.wgsl, activations.wgsl, matmul_params.wgsl (binding 1) and one weights_*.wgsl
// (binding 2, W: (K, np)).
// K must be a multiple of 4.
@group(0) @binding(3) var<storage, read> X: array<f32>;        // (rows, K)
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (rows, ld_y)

var<workgroup> xs: array<vec4<f32>, 256>; // (16 k, 16 row quads): X[m0 + 4q..4q+4, k0 + kk]
var<workgroup> ws: array<vec4<f32>, 256>; // (16 k, 16 column quads): W[k0 + kk, n0 + 4q..4q+4]

// The only early return is uniform across the workgroup (it depends on workgroup_id alone).
@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    var rows = step.n_tokens;
    var xrow0 = 0u;
    if (p.lm_rows == 1u) {
        rows = step.n_rows;
        xrow0 = step.row0;
    }
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    if (m0 >= rows) {
        return;
    }
    // Staging roles: X k = li%16 of rows m0 + 4·(li/16) + 0..3 (rows past the end repeat the
    // last); W k = li%16 and column group li/16 (8 columns) for the first 128 invocations.
    let x_k = li % 16u;
    let r0 = m0 + 4u * (li / 16u);
    let last = rows - 1u;
    let x_at0 = (xrow0 + min(r0, last)) * p.k + x_k;
    let x_at1 = (xrow0 + min(r0 + 1u, last)) * p.k + x_k;
    let x_at2 = (xrow0 + min(r0 + 2u, last)) * p.k + x_k;
    let x_at3 = (xrow0 + min(r0 + 3u, last)) * p.k + x_k;
    let x_to = x_k * 16u + li / 16u;
    let w_k = li % 16u;
    let w_n = n0 + 8u * (li / 16u);
    let w_to = w_k * 16u + 2u * (li / 16u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        var xv = vec4<f32>(0.0);
        if (k0 + x_k < p.k) {
            xv = vec4<f32>(X[x_at0 + k0], X[x_at1 + k0], X[x_at2 + k0], X[x_at3 + k0]);
        }
        xs[x_to] = xv; // X[r0..r0+4, k0 + x_k]
        if (li < 128u) {
            var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
            if (k0 + w_k < p.k && w_n < p.n) {
                w = w8(k0 + w_k, w_n);
            }
            ws[w_to] = w.lo;
            ws[w_to + 1u] = w.hi;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let a = xs[kk * 16u + lid.y]; // X[4·ty..4·ty+4, k]
            let b = ws[kk * 16u + lid.x]; // W[k, 4·tx..4·tx+4]
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * lid.y + i;
        if (m >= rows) { break; }
        for (var c = 0u; c < 4u; c++) {
            let n = n0 + 4u * lid.x + c;
            if (n >= p.n) { break; }
            let v = activate(acc[i][c] + B[p.b0 + n], p.act);
            let idx = m * p.ld_y + p.y_col0 + n;
            if (p.accumulate == 1u) {
                Y[idx] = Y[idx] + v;
            } else {
                Y[idx] = v;
            }
        }
    }
}
