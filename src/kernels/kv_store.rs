//! `shaders/kv_store.wgsl`: append the batch's keys and values to a layer's cache.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    v_offset: u32,
    _pad: [u32; 2],
}

/// `kv[0, pos..pos+T] = qkv[:, C..2C]`, `kv[1, pos..pos+T] = qkv[:, 2C..3C]`; kv: the layer's
/// (2, n_positions, C) cache. `batches_only`: launch nothing for single-token steps, whose
/// attention stores the token's key and value itself (only where `Kernels::fuses_decode`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kv_store(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    n_positions: usize,
    qkv: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    batches_only: bool,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        v_offset: (n_positions * c / 4) as u32,
        _pad: [0; 2],
    };
    let x = (c as u32 / 4).div_ceil(64); // workgroups of 64 over the C/4 vec4s of a row
    Dispatch::new(
        gpu,
        "kv_store",
        &k.kv_store,
        step,
        &params,
        &[qkv, kv],
        if batches_only && k.fuses_decode() {
            Grid::BatchTokens { x }
        } else {
            Grid::PerToken { x }
        },
    )
}
