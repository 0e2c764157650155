//! `shaders/embed.wgsl`: token-embedding gather plus learned position, per vocabulary chunk.

use super::{Dispatch, Grid, Kernels, WeightDtype};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    cp4: u32,
    row_begin: u32,
    row_end: u32,
}

/// `x[t] = wte[tokens[t]] + wpe[pos + t]` for the tokens in rows `rows` of wte held by `wte_chunk`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn embed(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    rows: std::ops::Range<usize>,
    dtype: WeightDtype,
    wte_chunk: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
    wpe: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> Dispatch {
    let cp4 = c.div_ceil(4) as u32;
    let params = Params {
        c: c as u32,
        cp4,
        row_begin: rows.start as u32,
        row_end: rows.end as u32,
    };
    let pipe = Kernels::by_dtype(&k.embed, dtype);
    Dispatch::new(
        gpu,
        "embed",
        pipe,
        step,
        &params,
        &[wte_chunk, tokens, wpe, x],
        Grid::PerToken {
            x: cp4.div_ceil(64),
        },
    )
}
