//! `shaders/matmul.wgsl`: Y = act(X·Wᵀ + b) (+ Y). Used by every linear layer and the LM head.

use super::{Dispatch, Grid, Kernels, WeightDtype};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    k: u32,
    n: u32,
    kp4: u32,
    ld_y: u32,
    y_col0: u32,
    act: u32,
    accumulate: u32,
    lm_rows: u32,
}

/// Shape and epilogue of one matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatmulSpec {
    /// Input features K.
    pub k: usize,
    /// Output features N (rows of W).
    pub n: usize,
    /// Row stride of Y (N unless writing a column slice).
    pub ld_y: usize,
    /// First column of Y written.
    pub y_col0: usize,
    /// `Activation::shader_code`, or 0.
    pub act: u32,
    /// Add into Y (residual) instead of overwriting it.
    pub accumulate: bool,
    /// Rows come from the step's LM-head window instead of the batch.
    pub lm_rows: bool,
}

/// `y = act(x·wᵀ + b)`, x: (rows, K), w: (N, Kp) in `dtype`, b: (N), y: (rows, ld_y).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    spec: MatmulSpec,
    dtype: WeightDtype,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        k: spec.k as u32,
        n: spec.n as u32,
        kp4: spec.k.div_ceil(4) as u32,
        ld_y: spec.ld_y as u32,
        y_col0: spec.y_col0 as u32,
        act: spec.act,
        accumulate: spec.accumulate as u32,
        lm_rows: spec.lm_rows as u32,
    };
    let x_groups = (spec.n.div_ceil(4) as u32).div_ceil(64);
    let grid = if spec.lm_rows {
        Grid::RowBlocks { x: x_groups }
    } else {
        Grid::TokenBlocks { x: x_groups }
    };
    Dispatch::new(
        gpu,
        "matmul",
        Kernels::by_dtype(&k.matmul, dtype),
        step,
        &params,
        &[w, x, b, y],
        grid,
    )
}
