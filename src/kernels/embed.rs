//! `shaders/embed.wgsl`: token-embedding gather plus learned position, per vocabulary chunk.

use super::{Dispatch, Grid, Kernels, WeightMatrix};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    row_begin: u32,
    row_end: u32,
    positions: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// `x[t] = wte[tokens[t]]·scale (+ wpe[pos + t])` for the tokens in `rows`, held by `wte_chunk`
/// as a (C, rows) weight matrix; `wpe`: (n_positions, C) learned positions, or `None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn embed(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    rows: std::ops::Range<usize>,
    wte_chunk: &WeightMatrix,
    tokens: &wgpu::Buffer,
    wpe: Option<&wgpu::Buffer>,
    scale: f32,
    x: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        row_begin: rows.start as u32,
        row_end: rows.end as u32,
        positions: wpe.is_some() as u32,
        scale,
        _pad: [0; 3],
    };
    let part = wte_chunk.single();
    Dispatch::with_resources(
        gpu,
        "embed",
        &k.embed.get(part.dtype),
        step,
        &params,
        vec![
            wgpu::BindingResource::TextureView(&part.view),
            tokens.as_entire_binding(),
            wpe.unwrap_or(tokens).as_entire_binding(),
            x.as_entire_binding(),
        ],
        Grid::PerToken {
            x: (c as u32).div_ceil(64),
        },
    )
}
