//! `shaders/layer_norm.wgsl` (an invocation per row) or `layer_norm_wide.wgsl` (a workgroup
//! per row): per-row LayerNorm with affine weights, or RMSNorm.

use super::{Dispatch, Grid, KernelFamily, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    eps: f32,
    rms: u32,
    add: u32,
}

/// `y = LN(x)·gamma + beta` (or with `rms`, `y = x / rms(x)·gamma`; with `add`, `y +=` that),
/// x and y: (T, C).
/// `batches_only`: launch nothing for single-token
/// steps, whose next matmul applies the LayerNorm itself (only where `Kernels::fuses_decode_norm`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    eps: f32,
    rms: bool,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (add, batches_only): (bool, bool),
) -> Dispatch {
    let params = Params {
        c: c as u32,
        eps,
        rms: rms as u32,
        add: add as u32,
    };
    Dispatch::new(
        gpu,
        "layer_norm",
        &k.layer_norm,
        step,
        &params,
        &[x, gamma, beta, y],
        match (k.family, batches_only && k.fuses_decode_norm()) {
            (KernelFamily::Cooperative, true) => Grid::BatchTokens { x: 1 },
            (KernelFamily::Cooperative, false) => Grid::PerToken { x: 1 },
            (KernelFamily::BarrierFree, true) => Grid::BatchTokens { x: 1 },
            (KernelFamily::BarrierFree, false) => Grid::PerToken { x: 1 },
        },
    )
}
