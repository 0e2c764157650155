//! `shaders/layer_norm.wgsl`: per-row LayerNorm with affine weights.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// `y = LN(x)·gamma + beta`, x and y: (T, C).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    eps: f32,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        eps,
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        "layer_norm",
        &k.layer_norm,
        step,
        &params,
        &[x, gamma, beta, y],
        Grid::TokenGroups { y: 1 },
    )
}
