//! `shaders/softcap.wgsl`: `y = cap·tanh(y / cap)` in place on logits rows.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    cap: f32,
    batch: u32,
    _pad: u32,
}

/// Soft-caps logits (rows, n) in place: the LM head's rows being read back (`batch_rows`
/// false) or every row of a batch of sequences (true).
pub(crate) fn softcap(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    n: usize,
    cap: f32,
    logits: &wgpu::Buffer,
    batch_rows: bool,
) -> Dispatch {
    let params = Params {
        n: n as u32,
        cap,
        batch: batch_rows as u32,
        _pad: 0,
    };
    let x = (n as u32).div_ceil(64);
    let grid = match batch_rows {
        true => Grid::PerToken { x },
        false => Grid::PerRow { x },
    };
    Dispatch::new(gpu, "softcap", &k.softcap, step, &params, &[logits], grid)
}
