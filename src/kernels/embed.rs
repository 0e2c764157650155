//! `shaders/embed.wgsl`: token-embedding gather plus learned position, per vocabulary chunk.

use super::{Dispatch, Grid, Kernels, WeightDtype, WeightMatrix};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    row_begin: u32,
    row_end: u32,
    _pad: u32,
}

/// `x[t] = wte[tokens[t]] + wpe[pos + t]` for the tokens in `rows`, held by `wte_chunk` as a
/// (C, rows) weight matrix.
#[allow(clippy::too_many_arguments)]
pub(crate) fn embed(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    rows: std::ops::Range<usize>,
    dtype: WeightDtype,
    wte_chunk: &WeightMatrix,
    tokens: &wgpu::Buffer,
    wpe: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        row_begin: rows.start as u32,
        row_end: rows.end as u32,
        _pad: 0,
    };
    let pipe = Kernels::by_dtype(&k.embed, dtype);
    Dispatch::with_resources(
        gpu,
        "embed",
        pipe,
        step,
        &params,
        vec![
            wgpu::BindingResource::TextureView(&wte_chunk.view),
            tokens.as_entire_binding(),
            wpe.as_entire_binding(),
            x.as_entire_binding(),
        ],
        Grid::PerToken {
            x: (c as u32).div_ceil(64),
        },
    )
}
