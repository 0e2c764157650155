//! `shaders/kv_store.wgsl`: append the batch's keys and values to a layer's cache.

use super::{Dispatch, Grid, Heads, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    kv_c: u32,
    v_offset: u32,
    q_c: u32,
    row: u32,
    rows: u32,
    _pad: [u32; 3],
}

/// `kv[0, pos..pos+T] = k`, `kv[1, pos..pos+T] = v` from qkv (T, q_c + 2·kv_c); kv: the
/// layer's (slots, 2, rows, kv_c) cache, position j in row j % rows (see `Attend::rows`). Launches nothing for single-token steps: attention
/// stores the token's key and value itself then (in both kernel families).
pub(crate) fn kv_store(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    heads: Heads,
    rows: usize,
    qkv: &wgpu::Buffer,
    kv: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        kv_c: heads.kv_c() as u32,
        v_offset: (rows * heads.kv_c() / 4) as u32,
        q_c: heads.q_c() as u32,
        row: heads.qkv_c() as u32,
        rows: rows as u32,
        _pad: [0; 3],
    };
    let x = (heads.kv_c() as u32 / 4).div_ceil(64); // workgroups of 64 over a key row's vec4s
    Dispatch::new(
        gpu,
        "kv_store",
        &k.kv_store,
        step,
        &params,
        &[qkv, kv],
        Grid::BatchTokens { x },
    )
}
