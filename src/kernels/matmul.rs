//! `shaders/matmul.wgsl` (batches) and `shaders/matvec.wgsl` (one row): y = act(x·W + b) (+ y).
//! Used by every linear layer and the LM head; [`MatmulDispatch`] picks the kernel per step.

use super::{Dispatch, Grid, Kernels, Recorder, WeightDtype, WeightMatrix};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    k: u32,
    n: u32,
    ld_y: u32,
    y_col0: u32,
    act: u32,
    accumulate: u32,
    lm_rows: u32,
    m0: u32,
}

/// Bytes of the uniform window `matmul_block.wgsl` reads X through; buffers passed as `x` to a
/// matmul with `max_rows > 1` need this much slack after their last row and UNIFORM usage.
pub(crate) const X_WINDOW: u64 = 64 << 10;

/// Shape and epilogue of one matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatmulSpec {
    /// Input features K.
    pub k: usize,
    /// Output features N.
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
    /// Largest batch; > 1 enables the uniform-window kernel for 8-row blocks where K allows.
    pub max_rows: usize,
}

/// A linear layer's two launches: the batched kernel and the one-row kernel.
pub(crate) struct MatmulDispatch {
    many: Dispatch,
    one: Dispatch,
    /// One launch per 8-row block of the batch, X through a uniform window (empty if unusable).
    blocks: Vec<Dispatch>,
    lm_rows: bool,
}

impl MatmulDispatch {
    /// Number of 8-row uniform-window launches prepared (0 when that kernel is not usable).
    #[cfg(test)]
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Records the launch for the step: one row uses the matrix-vector kernel.
    pub fn encode(&self, rec: &mut Recorder<'_>, n_tokens: u32, n_rows: u32) {
        let rows = if self.lm_rows { n_rows } else { n_tokens };
        if rows == 1 {
            self.one.encode(rec, n_tokens, n_rows);
        } else if !self.blocks.is_empty() {
            for b in &self.blocks[..rows.div_ceil(8) as usize] {
                b.encode(rec, n_tokens, n_rows);
            }
        } else {
            self.many.encode(rec, n_tokens, n_rows);
        }
    }
}

/// `y = act(x·w + b)`, x: (rows, K), w: (K, N) in `dtype`, b: (N), y: (rows, ld_y).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    spec: MatmulSpec,
    dtype: WeightDtype,
    x: &wgpu::Buffer,
    w: &WeightMatrix,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> MatmulDispatch {
    let params = Params {
        k: spec.k as u32,
        n: spec.n as u32,
        ld_y: spec.ld_y as u32,
        y_col0: spec.y_col0 as u32,
        act: spec.act,
        accumulate: spec.accumulate as u32,
        lm_rows: spec.lm_rows as u32,
        m0: 0,
    };
    let blocks = (spec.n.div_ceil(8) as u32).div_ceil(16);
    let grid = if spec.lm_rows {
        Grid::RowBlocks { x: blocks }
    } else {
        Grid::TokenBlocks { x: blocks }
    };
    let bindings = || {
        vec![
            wgpu::BindingResource::TextureView(&w.view),
            x.as_entire_binding(),
            b.as_entire_binding(),
            y.as_entire_binding(),
        ]
    };
    let many = Dispatch::with_resources(
        gpu,
        "matmul",
        Kernels::by_dtype(&k.matmul, dtype),
        step,
        &params,
        bindings(),
        grid,
    );
    let one_grid = Grid::Fixed {
        x: (spec.n.div_ceil(8) as u32).div_ceil(8),
    };
    let one = Dispatch::with_resources(
        gpu,
        "matvec",
        Kernels::by_dtype(&k.matvec, dtype),
        step,
        &params,
        bindings(),
        one_grid,
    );
    // 8 rows of X must fit the window and start at an aligned offset.
    let block_bytes = (8 * spec.k * 4) as u64;
    let align = gpu.limits().min_uniform_buffer_offset_alignment as u64;
    let window_ok = gpu.limits().max_uniform_buffer_binding_size >= X_WINDOW;
    let mut blocks = Vec::new();
    if !spec.lm_rows
        && spec.max_rows > 1
        && block_bytes <= X_WINDOW
        && block_bytes % align == 0
        && window_ok
    {
        let pipe = Kernels::by_dtype(&k.matmul_block, dtype);
        for blk in 0..spec.max_rows.div_ceil(8) {
            let p = Params {
                m0: (8 * blk) as u32,
                ..params
            };
            let window = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: x,
                offset: blk as u64 * block_bytes,
                size: std::num::NonZeroU64::new(X_WINDOW),
            });
            let resources = vec![
                wgpu::BindingResource::TextureView(&w.view),
                window,
                b.as_entire_binding(),
                y.as_entire_binding(),
            ];
            blocks.push(Dispatch::with_resources(
                gpu,
                "matmul",
                pipe,
                step,
                &p,
                resources,
                one_grid_block(spec.n),
            ));
        }
    }
    MatmulDispatch {
        many,
        one,
        blocks,
        lm_rows: spec.lm_rows,
    }
}

/// Grid of one 8-row block: the columns only.
fn one_grid_block(n: usize) -> Grid {
    Grid::Fixed {
        x: (n.div_ceil(8) as u32).div_ceil(16),
    }
}
