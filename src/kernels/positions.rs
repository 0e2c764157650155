//! `shaders/positions.wgsl`: adds learned position embeddings to rows already in X.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    _pad: [u32; 3],
}

/// `x[t] += wpe[pos + t]`, x: (T, C), wpe: (n_positions, C).
pub(crate) fn add_positions(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    wpe: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        _pad: [0; 3],
    };
    Dispatch::new(
        gpu,
        "positions",
        &k.positions,
        step,
        &params,
        &[wpe, x],
        Grid::PerToken {
            x: (c as u32).div_ceil(64),
        },
    )
}
