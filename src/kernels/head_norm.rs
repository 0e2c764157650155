//! `shaders/head_norm.wgsl`: RMSNorm of every query and key head, in place (q_norm, k_norm).

use super::{Dispatch, Grid, Heads, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    ld: u32,
    head_dim: u32,
    q_heads: u32,
    k_heads: u32,
    k_col0: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// Each query head of qkv (T, q_c + 2·kv_c) becomes RMSNorm(head)·q_gamma and each key head
/// RMSNorm(head)·k_gamma; q_gamma, k_gamma: (head_dim).
#[allow(clippy::too_many_arguments)]
pub(crate) fn head_norm(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    heads: Heads,
    eps: f32,
    qkv: &wgpu::Buffer,
    q_gamma: &wgpu::Buffer,
    k_gamma: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        ld: heads.qkv_c() as u32,
        head_dim: heads.head_dim as u32,
        q_heads: heads.n_head as u32,
        k_heads: heads.n_kv_head as u32,
        k_col0: heads.q_c() as u32,
        eps,
        _pad: [0; 2],
    };
    let n = (heads.n_head + heads.n_kv_head) as u32;
    Dispatch::new(
        gpu,
        "head_norm",
        &k.head_norm,
        step,
        &params,
        &[qkv, q_gamma, k_gamma],
        Grid::PerToken { x: n.div_ceil(64) },
    )
}
