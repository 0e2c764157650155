//! `shaders/attention.wgsl` (8 queries of a head per workgroup) or `attention_wide.wgsl` (a
//! workgroup per query and head): causal multi-head attention of the batch's queries over the
//! cache.

use super::{Dispatch, Grid, KernelFamily, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    n_head: u32,
    hd4: u32,
    scale: f32,
    v_offset: u32,
    dq_bits: u32,
    _pad: [u32; 2],
}

/// `out = softmax(q·Kᵀ·scale + causal mask)·V` per head; qkv: (T, 3C), kv: the layer's
/// (2, n_positions, C) cache of keys then values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    c: usize,
    n_head: usize,
    scale: f32,
    n_positions: usize,
    qkv: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Dispatch {
    let hd4 = (c / n_head / 4) as u32;
    let params = Params {
        c: c as u32,
        n_head: n_head as u32,
        hd4,
        scale,
        v_offset: (n_positions * c / 4) as u32,
        dq_bits: hd4.next_power_of_two().trailing_zeros(),
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        "attention",
        &k.attention,
        step,
        &params,
        &[qkv, kv, out],
        match k.family {
            KernelFamily::Cooperative => Grid::PerToken { x: n_head as u32 },
            KernelFamily::BarrierFree => Grid::QueryOctets { y: n_head as u32 },
        },
    )
}
