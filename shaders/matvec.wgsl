// y = act(x·W + b) (+ y) for a single row: the decode path, bound by reading W once.
// Needs common.wgsl, activations.wgsl and one weights_*.wgsl (binding 2, W: (K, np) panels).
// Each invocation owns 16 adjacent columns and walks k four at a time; x is the same for every
// invocation. On lavapipe every storage load costs a loop over the SIMD lanes, so the kernel
// issues few, wide loads (eight weights each). K must be a multiple of 4.
struct Params {
    k: u32,          // input features K (multiple of 4)
    n: u32,          // output features N
    np: u32,         // N padded to a multiple of 8
    ld_y: u32,       // unused here (one row)
    y_col0: u32,     // first column of y written (LM-head chunks)
    act: u32,        // ACT_* epilogue
    accumulate: u32, // 1: y += result (residual), 0: y = result
    lm_rows: u32,    // 1: the row is step.row0 (LM head), 0: row 0
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;  // (rows, K), one row used
@group(0) @binding(4) var<storage, read> B: array<f32>;        // (N) bias, or zeros
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // (1, ld_y)

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * 16u;
    if (n0 >= p.n) {
        return;
    }
    let k4 = p.k / 4u;
    let xb = select(0u, step.row0, p.lm_rows == 1u) * k4;
    let pb = panel_base(n0, p.k, p.np);
    let s = pb.y;
    var off = pb.x;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); // columns 0..7
    var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0); // columns 8..15
    for (var j = 0u; j < k4; j++) {
        let v = X[xb + j];
        let p0 = w8(off);          let q0 = w8(off + 8u);
        let p1 = w8(off + s);      let q1 = w8(off + s + 8u);
        let p2 = w8(off + 2u * s); let q2 = w8(off + 2u * s + 8u);
        let p3 = w8(off + 3u * s); let q3 = w8(off + 3u * s + 8u);
        off += 4u * s;
        a0 += v.x * p0.lo + v.y * p1.lo + v.z * p2.lo + v.w * p3.lo;
        a1 += v.x * p0.hi + v.y * p1.hi + v.z * p2.hi + v.w * p3.hi;
        a2 += v.x * q0.lo + v.y * q1.lo + v.z * q2.lo + v.w * q3.lo;
        a3 += v.x * q0.hi + v.y * q1.hi + v.z * q2.hi + v.w * q3.hi;
    }
    let r = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var c = 0u; c < 16u; c++) {
        let n = n0 + c;
        if (n >= p.n) { break; }
        let v = activate(r[c / 4u][c % 4u] + B[n], p.act);
        let idx = p.y_col0 + n;
        if (p.accumulate == 1u) {
            Y[idx] = Y[idx] + v;
        } else {
            Y[idx] = v;
        }
    }
}
