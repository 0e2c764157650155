//! `shaders/gated.wgsl`: a gated feed-forward's `act(gate) · up`.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    f: u32,
    act: u32,
    _pad: [u32; 2],
}

/// `y[t, j] = act(gu[t, j]) · gu[t, F + j]`, gu: (T, 2F) as [gate | up], y: (T, F); `act` is an
/// `Activation::shader_code`.
pub(crate) fn gated(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    f: usize,
    act: u32,
    gu: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        f: f as u32,
        act,
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        "gated",
        &k.gated,
        step,
        &params,
        &[gu, y],
        Grid::PerToken {
            x: (f as u32).div_ceil(64),
        },
    )
}
