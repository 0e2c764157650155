// Parameters of every matmul and matrix-vector kernel (matmul.wgsl, matmul_block.wgsl,
// matvec.wgsl and their _wide variants): one layout, `Params` in src/kernels/matmul.rs.
struct Params {
    k: u32,          // input features K (multiple of 4)
    n: u32,          // output features N
    ld_y: u32,       // row stride of Y (unused by the one-row kernels)
    y_col0: u32,     // first column of Y written (LM-head chunks)
    act: u32,        // ACT_* epilogue
    accumulate: u32, // 1: Y += result (residual), 0: Y = result
    lm_rows: u32,    // 1: rows come from step.row0 / step.n_rows (LM head), 0: rows = step.n_tokens
    m0: u32,         // matmul_block.wgsl: first batch row of this block
    ln: u32,         // one-row kernels: 1 = x is LN(X row)·gamma + beta, 2 = RMSNorm, 0 = the X row
    eps: f32,        // one-row kernels: the norm's epsilon when ln ≠ 0
    b0: u32,         // first bias element of this launch's columns (a part of a stacked matrix)
}
@group(0) @binding(1) var<uniform> p: Params;
