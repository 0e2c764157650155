// y = act(x·W + b) (+ y) for a single row (decode): the cooperative variant of matvec.wgsl for
// hardware GPUs. One workgroup of 256 per group of 8 columns: invocation i takes k = i,
// i + 256, …, four `w8` loads in flight at a time (four texels in f16, eight in f32), so
// neighbouring invocations read neighbouring
// texels of the column group's texture row and the whole row is requested at once (GPT-2's
// K = 768 in one step); the 256 partial sums are added in workgroup memory and 8 invocations
// write the 8 columns.
// With `ln` set (1: LayerNorm, 2: RMSNorm, whose beta is zeros), x is the raw row and the
// kernel applies the norm that precedes this
// linear layer itself (each workgroup computes the row's mean and variance, which costs less
// than a dispatch of layer_norm_wide.wgsl; for single-token steps the forward pass then skips
// that dispatch, while after a batch the LayerNorm has run and is recomputed here).
// Needs common.wgsl, activations.wgsl, matmul_params.wgsl (binding 1), workgroup_reduce.wgsl
// and one weights_*.wgsl (binding 2, W: (K, np)).
@group(0) @binding(3) var<storage, read> X: array<f32>;        // (rows, K), one row used
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (1, ld_y)
@group(0) @binding(6) var<storage, read> G: array<f32>;        // (K) norm gamma (ln ≠ 0)
@group(0) @binding(7) var<storage, read> Be: array<f32>;       // (K) norm beta (ln ≠ 0; zeros for RMSNorm)

var<private> xb: u32;     // offset of the row in X
var<private> mean: f32;   // norm statistics of the row (ln ≠ 0; mean 0 for RMSNorm)
var<private> inv_sd: f32;

// x[k], normalized when the LayerNorm is fused.
fn x_at(k: u32) -> f32 {
    let v = X[xb + k];
    if (p.ln == 0u) {
        return v;
    }
    return (v - mean) * inv_sd * G[k] + Be[k];
}

const WG: u32 = 256u;
var<workgroup> part: array<vec4<f32>, 512>; // (256, 2) partial sums of columns n0..n0+4, n0+4..n0+8

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n0 = wg.x * 8u;
    xb = select(0u, step.row0, p.lm_rows == 1u) * p.k;
    // The 8 writers load their bias and old y now, so these loads overlap the weights'
    // instead of following the reduction.
    let n = n0 + li;
    let writes = li < 8u && n < p.n;
    var bias = 0.0;
    var y_old = 0.0;
    if (writes) {
        bias = B[p.b0 + n];
        if (p.accumulate == 1u) {
            y_old = Y[p.y_col0 + n];
        }
    }
    if (p.ln != 0u) {
        var s = 0.0;
        for (var k = li; k < p.k; k += WG) {
            s += X[xb + k];
        }
        // wg_sum has barriers: every invocation calls it, RMSNorm then drops the mean.
        mean = select(wg_sum(s, li, WG) / f32(p.k), 0.0, p.ln == 2u);
        var q = 0.0;
        for (var k = li; k < p.k; k += WG) {
            let d = X[xb + k] - mean;
            q += d * d;
        }
        inv_sd = inverseSqrt(wg_sum(q, li, WG) / f32(p.k) + p.eps);
    }
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    // Four texels in flight per step. Indices past K are clamped to K - 1 (a real weight)
    // with x = 0, so every load is issued unconditionally.
    let last = p.k - 1u;
    for (var k0 = 0u; k0 < p.k; k0 += 4u * WG) {
        let k = k0 + li;
        let ka = min(k, last);
        let kb = min(k + WG, last);
        let kc = min(k + 2u * WG, last);
        let kd = min(k + 3u * WG, last);
        let w0 = w8(ka, n0);
        let w1 = w8(kb, n0);
        let w2 = w8(kc, n0);
        let w3 = w8(kd, n0);
        let x0 = select(0.0, x_at(ka), k < p.k);
        let x1 = select(0.0, x_at(kb), k + WG < p.k);
        let x2 = select(0.0, x_at(kc), k + 2u * WG < p.k);
        let x3 = select(0.0, x_at(kd), k + 3u * WG < p.k);
        lo += x0 * w0.lo + x1 * w1.lo + x2 * w2.lo + x3 * w3.lo;
        hi += x0 * w0.hi + x1 * w1.hi + x2 * w2.hi + x3 * w3.hi;
    }
    part[2u * li] = lo;
    part[2u * li + 1u] = hi;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            part[2u * li] += part[2u * (li + s)];
            part[2u * li + 1u] += part[2u * (li + s) + 1u];
        }
    }
    workgroupBarrier();
    if (writes) {
        Y[p.y_col0 + n] = y_old + activate(part[li / 4u][li % 4u] + bias, p.act);
    }
}
