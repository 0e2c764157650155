//! The per-step uniform every kernel reads (`Step` in `shaders/common.wgsl`): the batch's
//! token count, position and LM-head rows, then how a batch of sequences maps rows to
//! positions and KV-cache slots.

use crate::gpu::Gpu;

/// The per-step uniform (`Step` in `shaders/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Step {
    pub n_tokens: u32,
    pub pos: u32,
    pub row0: u32,
    pub n_rows: u32,
}

/// Rows of a batch of sequences (`per_row` steps): `MAX_ROWS` in `shaders/common.wgsl`.
pub(crate) const MAX_ROWS: usize = 64;

/// What follows [`Step`] in the step uniform: how the batch's rows map to positions and KV
/// cache slots (`Step` in `shaders/common.wgsl`, after `n_rows`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowMap {
    /// 0: the batch is one sequence's tokens at `pos..pos + T` of cache slot `slot`; 1: row t
    /// is one token at position `rows[t][0]` of slot `rows[t][1]`.
    pub per_row: u32,
    pub slot: u32,
    pub _pad: [u32; 2],
    pub rows: [[u32; 4]; MAX_ROWS],
}

/// The step uniform: [`Step`], then the [`RowMap`]; zeroed (one sequence in slot 0).
pub(crate) fn step_uniform(gpu: &Gpu) -> wgpu::Buffer {
    let bytes = std::mem::size_of::<Step>() + std::mem::size_of::<RowMap>();
    let zeros = vec![0u8; bytes];
    let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step"),
        size: bytes as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&buf, 0, &zeros);
    buf
}
