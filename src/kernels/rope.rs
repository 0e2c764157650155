//! `shaders/rope.wgsl`: rotary position embedding of the batch's queries and keys, in place,
//! from a (cos, sin) table made here in f64.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    ld: u32,
    head_dim: u32,
    half: u32,
    q_heads: u32,
    k_heads: u32,
    k_col0: u32,
    _pad: [u32; 2],
}

/// The rotation table of `n_positions` positions: for position p and pair j,
/// (cos, sin) of p·inv_freq[j], computed in f64 and rounded once. (n_positions, half) pairs.
pub(crate) fn rope_table(n_positions: usize, inv_freq: &[f64]) -> Vec<[f32; 2]> {
    let mut t = Vec::with_capacity(n_positions * inv_freq.len());
    for p in 0..n_positions {
        for f in inv_freq {
            let a = p as f64 * f;
            t.push([a.cos() as f32, a.sin() as f32]);
        }
    }
    t
}

/// Rotates, in place, the first `2·half` dimensions of each of the `q_heads` query heads
/// (columns 0..) and `k_heads` key heads (columns `k_col0`..) of qkv (T, ld), by the angles of
/// positions pos..pos+T in `table` (see [`rope_table`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    ld: usize,
    head_dim: usize,
    half: usize,
    (q_heads, k_heads, k_col0): (usize, usize, usize),
    qkv: &wgpu::Buffer,
    table: &wgpu::Buffer,
) -> Dispatch {
    let params = Params {
        ld: ld as u32,
        head_dim: head_dim as u32,
        half: half as u32,
        q_heads: q_heads as u32,
        k_heads: k_heads as u32,
        k_col0: k_col0 as u32,
        _pad: [0; 2],
    };
    Dispatch::new(
        gpu,
        "rope",
        &k.rope,
        step,
        &params,
        &[qkv, table],
        Grid::PerToken {
            x: q_heads.max(k_heads) as u32,
        },
    )
}
