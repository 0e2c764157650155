//! `shaders/kv_store.wgsl`: append the batch's keys and values to a layer's cache.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    _pad: [u32; 3],
}

/// `k_cache[pos..pos+T] = qkv[:, C..2C]`, `v_cache[pos..pos+T] = qkv[:, 2C..3C]`.
pub(crate) fn kv_store(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    qkv: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        c: c as u32,
        _pad: [0; 3],
    };
    Dispatch::new(
        gpu,
        "kv_store",
        &k.kv_store,
        step,
        &params,
        &[qkv, k_cache, v_cache],
        Grid::PerToken {
            x: (c as u32 / 4).div_ceil(64),
        },
    )
}
