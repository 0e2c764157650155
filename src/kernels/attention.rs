//! `shaders/attention.wgsl` (8 queries of a head per workgroup) or `attention_wide.wgsl` (a
//! workgroup per query and head): causal multi-head attention of the batch's queries over the
//! cache, with grouped-query attention (several query heads per key/value head).

use super::{Dispatch, Grid, KernelFamily, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    q_c: u32,
    n_head: u32,
    hd4: u32,
    scale: f32,
    v_offset: u32,
    dq_bits: u32,
    kv_c: u32,
    group: u32,
    window: u32,
    softcap: f32,
    rows: u32,
    _pad: u32,
}

/// How a layer's queries attend: the score scale, the soft-cap, the sliding window and the
/// positions its cache holds per sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attend {
    /// Scores are q·k·scale (1/√head_dim in most models).
    pub scale: f32,
    /// Scores become cap·tanh(score / cap) (Gemma 2's `attn_logit_softcapping`).
    pub softcap: Option<f32>,
    /// A query sees only the last `window` positions, its own included (a sliding-window
    /// layer); `None`: every position before it.
    pub window: Option<usize>,
    /// Positions one sequence's cache holds: position j is row j % rows (a ring when fewer
    /// than the context: see `activations::cache_rows`).
    pub rows: usize,
}

/// The attention heads of a layer: query heads, key/value heads (fewer with grouped-query
/// attention, dividing `n_head`) and the dimension of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Features of the queries: n_head · head_dim.
    pub fn q_c(self) -> usize {
        self.n_head * self.head_dim
    }

    /// Features of the keys (and of the values): n_kv_head · head_dim.
    pub fn kv_c(self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Row width of qkv: q | k | v.
    pub fn qkv_c(self) -> usize {
        self.q_c() + 2 * self.kv_c()
    }
}

/// `out = softmax(cap(q·Kᵀ·scale) + causal / window mask)·V` per query head over its key/value
/// head (see [`Attend`]); qkv: (T, q_c + 2·kv_c), kv: the layer's (slots, 2, rows, kv_c) cache of keys then values,
/// out: (T, q_c). The batch is one sequence's tokens; the cooperative kernel also serves a
/// batch of sequences (`step.per_row`), the barrier-free family needs [`attention_rows`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    heads: Heads,
    how: Attend,
    qkv: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Dispatch {
    let params = params(heads, how);
    let n_head = heads.n_head as u32;
    Dispatch::new(
        gpu,
        "attention",
        &k.attention,
        step,
        &params,
        &[qkv, kv, out],
        match k.family {
            KernelFamily::Cooperative => Grid::PerToken { x: n_head },
            KernelFamily::BarrierFree => Grid::QueryOctets { y: n_head },
        },
    )
}

/// Like [`attention`] for a batch of sequences (`step.per_row`: row t at its own position and
/// cache slot) where the family needs a kernel of its own for that: in the barrier-free family
/// `attention_decode.wgsl` (with subgroups; it also serves one sequence's single-token steps,
/// see `Kernels::attention_decode`) or `attention_rows.wgsl`; `None` in the cooperative one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_rows(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    heads: Heads,
    how: Attend,
    qkv: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Option<Dispatch> {
    let pipeline = k.attention_rows.as_ref()?;
    let params = params(heads, how);
    Some(Dispatch::new(
        gpu,
        "attention",
        pipeline,
        step,
        &params,
        &[qkv, kv, out],
        Grid::PerToken {
            x: if k.attention_decode() {
                heads.n_head as u32
            } else {
                (heads.n_head as u32).div_ceil(8)
            },
        },
    ))
}

fn params(heads: Heads, how: Attend) -> Params {
    let hd4 = (heads.head_dim / 4) as u32;
    Params {
        q_c: heads.q_c() as u32,
        n_head: heads.n_head as u32,
        hd4,
        scale: how.scale,
        v_offset: (how.rows * heads.kv_c() / 4) as u32,
        dq_bits: hd4.next_power_of_two().trailing_zeros(),
        kv_c: heads.kv_c() as u32,
        group: (heads.n_head / heads.n_kv_head.max(1)).max(1) as u32,
        window: how.window.map_or(u32::MAX, |w| w as u32),
        softcap: how.softcap.unwrap_or(0.0),
        rows: how.rows as u32,
        _pad: 0,
    }
}
