//! `shaders/matmul*.wgsl` (batches) and `shaders/matvec*.wgsl` (one row): y = act(x·W + b)
//! (+ y). Used by every linear layer and the LM head; [`MatmulDispatch`] picks the kernel per
//! step. The grids follow the kernel family (`Kernels::family`): the barrier-free kernels
//! take 8 columns per invocation and 8 rows per workgroup, the cooperative ones a 64×64 tile
//! per workgroup (batches) and a workgroup per 8 columns (one row). The one-row kernels can
//! also apply the LayerNorm that precedes the layer ([`FusedNorm`]).

use super::weight_matrix::Part;
use super::{Dispatch, Grid, KernelFamily, Kernels, Recorder, WeightMatrix};
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
    ln: u32,
    eps: f32,
    b0: u32,
    _pad: u32,
}

/// The LayerNorm whose output is a matmul's x: `x = LN(src)·gamma + beta`, per row. The
/// one-row kernels read `src` and normalize it themselves where `Kernels::fuses_decode_norm`
/// (cooperative: `matvec_wide.wgsl`; barrier-free: `fused_norm.wgsl`), so a single-token step
/// needs no LayerNorm dispatch; the batched kernels read x.
#[derive(Clone, Copy)]
pub(crate) struct FusedNorm<'a> {
    pub src: &'a wgpu::Buffer,
    pub gamma: &'a wgpu::Buffer,
    pub beta: &'a wgpu::Buffer,
    pub eps: f32,
    /// RMSNorm (beta is zeros) rather than LayerNorm.
    pub rms: bool,
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
    /// The layer's name in GPT-2 checkpoints (`c_attn`, …, `lm_head`), for profiles.
    pub layer: &'static str,
}

impl MatmulSpec {
    /// Whether every row of Y this launch writes starts on a 16-byte boundary, so that the
    /// barrier-free batch kernels can store four columns at a time (`store_vec4.wgsl`).
    fn vec4_stores(&self) -> bool {
        self.n.is_multiple_of(4) && self.ld_y.is_multiple_of(4) && self.y_col0.is_multiple_of(4)
    }
}

/// The launches of one part of a matrix (see `WeightMatrix`): the batched kernel and the
/// one-row kernel.
struct PartDispatch {
    many: Dispatch,
    one: Dispatch,
    /// One launch per 8-row block of the batch, X through a uniform window (empty if unusable).
    blocks: Vec<Dispatch>,
}

/// A linear layer's launches: one set per part of its weight matrix.
pub(crate) struct MatmulDispatch {
    parts: Vec<PartDispatch>,
    lm_rows: bool,
}

impl MatmulDispatch {
    /// Number of 8-row uniform-window launches prepared (0 when that kernel is not usable).
    #[cfg(test)]
    pub fn block_count(&self) -> usize {
        self.parts[0].blocks.len()
    }

    /// Records the launch for the step: one row uses the matrix-vector kernel.
    pub fn encode(&self, rec: &mut Recorder<'_>, n_tokens: u32, n_rows: u32) {
        let rows = if self.lm_rows { n_rows } else { n_tokens };
        for p in &self.parts {
            if rows == 1 {
                p.one.encode(rec, n_tokens, n_rows);
            } else if !p.blocks.is_empty() {
                for b in &p.blocks[..rows.div_ceil(8) as usize] {
                    b.encode(rec, n_tokens, n_rows);
                }
            } else {
                p.many.encode(rec, n_tokens, n_rows);
            }
        }
    }
}

/// `y = act(x·w + b)`, x: (rows, K), w: (K, N) in its storage formats, b: (N), y: (rows, ld_y).
/// `norm`: the LayerNorm x comes from, for the fused one-row kernel where the family has one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    spec: MatmulSpec,
    x: &wgpu::Buffer,
    w: &WeightMatrix,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    norm: Option<FusedNorm<'_>>,
) -> MatmulDispatch {
    let parts = w
        .parts
        .iter()
        .map(|part| {
            let spec = MatmulSpec {
                n: part.n,
                y_col0: spec.y_col0 + part.n0,
                ..spec
            };
            part_dispatch(gpu, k, step, spec, part, part.n0, x, b, y, norm)
        })
        .collect();
    MatmulDispatch {
        parts,
        lm_rows: spec.lm_rows,
    }
}

#[allow(clippy::too_many_arguments)]
fn part_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    spec: MatmulSpec,
    w: &Part,
    b0: usize,
    x: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    norm: Option<FusedNorm<'_>>,
) -> PartDispatch {
    let params = Params {
        k: spec.k as u32,
        n: spec.n as u32,
        ld_y: spec.ld_y as u32,
        y_col0: spec.y_col0 as u32,
        act: spec.act,
        accumulate: spec.accumulate as u32,
        lm_rows: spec.lm_rows as u32,
        m0: 0,
        ln: 0,
        eps: 0.0,
        b0: b0 as u32,
        _pad: 0,
    };
    let dtype = w.dtype;
    let cooperative = k.family == KernelFamily::Cooperative;
    let grid = match (cooperative, spec.lm_rows) {
        (true, true) => Grid::RowTiles {
            x: spec.n.div_ceil(64) as u32,
        },
        (true, false) => Grid::TokenTiles {
            x: spec.n.div_ceil(64) as u32,
        },
        (false, true) => Grid::RowBlocks {
            x: (spec.n.div_ceil(8) as u32).div_ceil(16),
        },
        (false, false) => Grid::TokenBlocks {
            x: (spec.n.div_ceil(8) as u32).div_ceil(16),
        },
    };
    let bindings = || {
        vec![
            wgpu::BindingResource::TextureView(&w.view),
            x.as_entire_binding(),
            b.as_entire_binding(),
            y.as_entire_binding(),
        ]
    };
    // The batch kernels: with vec4 stores where the rows of Y are aligned.
    let (many_pipes, block_pipes) = match &k.matmul_vec4 {
        Some([many, block]) if spec.vec4_stores() => (many, Some(block)),
        _ => (&k.matmul, k.matmul_block.as_ref()),
    };
    let many = Dispatch::with_resources(
        gpu,
        "matmul",
        &many_pipes.get(dtype),
        step,
        &params,
        bindings(),
        grid,
    )
    .for_layer(spec.layer);
    let groups = spec.n.div_ceil(8) as u32; // 8-column groups
    let one_grid = Grid::Fixed {
        x: if cooperative {
            groups
        } else {
            groups.div_ceil(8)
        },
    };
    // The one-row kernels also bind gamma and beta (6, 7): the fused LayerNorm's, or the bias
    // as a placeholder they never read.
    let (one_params, one_bindings) = match norm.filter(|_| k.fuses_decode_norm()) {
        None => {
            let mut r = bindings();
            r.extend([b.as_entire_binding(), b.as_entire_binding()]);
            (params, r)
        }
        Some(f) => {
            let mut r = bindings();
            r[1] = f.src.as_entire_binding();
            r.extend([f.gamma.as_entire_binding(), f.beta.as_entire_binding()]);
            let p = Params {
                ln: if f.rms { 2 } else { 1 },
                eps: f.eps,
                ..params
            };
            (p, r)
        }
    };
    let one = Dispatch::with_resources(
        gpu,
        "matvec",
        &k.matvec.get(dtype),
        step,
        &one_params,
        one_bindings,
        one_grid,
    )
    .for_layer(spec.layer);
    // 8 rows of X must fit the window and start at an aligned offset.
    let block_bytes = (8 * spec.k * 4) as u64;
    let align = gpu.limits().min_uniform_buffer_offset_alignment as u64;
    let window_ok = gpu.limits().max_uniform_buffer_binding_size >= X_WINDOW;
    let mut blocks = Vec::new();
    if let Some(block_pipes) = block_pipes.filter(|_| {
        !spec.lm_rows
            && spec.max_rows > 1
            && block_bytes <= X_WINDOW
            && block_bytes.is_multiple_of(align)
            && window_ok
    }) {
        let pipe = block_pipes.get(dtype);
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
            blocks.push(
                Dispatch::with_resources(
                    gpu,
                    "matmul",
                    &pipe,
                    step,
                    &p,
                    resources,
                    one_grid_block(spec.n),
                )
                .for_layer(spec.layer),
            );
        }
    }
    PartDispatch { many, one, blocks }
}

/// Grid of one 8-row block: the columns only.
fn one_grid_block(n: usize) -> Grid {
    Grid::Fixed {
        x: (n.div_ceil(8) as u32).div_ceil(16),
    }
}
