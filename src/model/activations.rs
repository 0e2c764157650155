//! The GPU buffers of one session or engine ([`Activations`]: residual stream, norms, q|k|v,
//! attention output, MLP, logits, the KV cache of every layer) and the per-step uniform, with
//! the byte counts the fit check uses before anything is allocated.

use crate::config::{Config, MlpKind};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::{step_uniform, KvDtype, ARGMAX_BYTES, X_WINDOW};

/// GPU buffers of one session (or engine). S = KV-cache slots (sequences), B = max batch, C = hidden size, F = feed-forward size,
/// E = embedding width, R = logits rows per read-back; Q = n_head · head_dim and
/// K = n_kv_head · head_dim (Q = K = C without grouped-query attention).
pub(crate) struct Activations {
    pub step: wgpu::Buffer,        // Step uniform
    pub tokens: wgpu::Buffer,      // (B) u32; greedy steps leave their token in [0]
    pub x: wgpu::Buffer,           // (B, C) residual stream
    pub ln: wgpu::Buffer,          // (B, C) LayerNorm output (post-LN: the other stream)
    pub ln2: wgpu::Buffer,         // (B, C) a second LayerNorm output (parallel residual)
    pub qkv: wgpu::Buffer,         // (B, Q + 2K)
    pub att: wgpu::Buffer,         // (B, Q) attention output, heads concatenated
    pub fc: wgpu::Buffer,          // (B, F) MLP hidden
    pub gate_up: wgpu::Buffer,     // (B, 2F) a gated MLP's [gate | up] (gated families only)
    pub emb: wgpu::Buffer,         // (B, E) rows of embedding width (project_in / _out)
    pub kv_cache: Vec<Cache>, // n_layer × (S, 2, rows, K): per slot keys, then values (f32 or f16)
    pub logits: wgpu::Buffer, // (R, V)
    pub best: wgpu::Buffer,   // (L + 1, 2) u32 argmax candidates, then the winner
    pub staging: wgpu::Buffer, // (R, V) mappable copy of logits
    pub winner: [wgpu::Buffer; 2], // (2) u32 mappable copies of best[L], one per step in flight
}

/// One layer's KV cache: per sequence slot, `rows` positions of keys then values, position j
/// in row j % rows. A global layer holds the context (rows = n_ctx); a sliding-window layer
/// only its window and a batch (a ring, see [`cache_rows`]).
pub(crate) struct Cache {
    pub buf: wgpu::Buffer,
    /// The layer's sliding window, if it has one.
    pub window: Option<usize>,
    /// Positions held per slot.
    pub rows: usize,
}

/// Positions layer `l`'s cache holds per sequence when batches have at most `batch` tokens:
/// the context in use, or for a sliding-window layer `window + batch − 1` where that is less
/// (a ring: a batch stores its keys before attending, and the oldest key its first query
/// sees must survive the batch's last store).
pub(crate) fn cache_rows(cfg: &Config, l: usize, batch: usize) -> usize {
    match cfg.window(l) {
        Some(w) => (w + batch - 1).min(cfg.n_ctx),
        None => cfg.n_ctx,
    }
}

/// Width of the gate | up buffer: 2F for gated feed-forwards, else nothing (one row of 4).
pub(crate) fn gate_up_width(cfg: &Config) -> usize {
    match cfg.mlp {
        MlpKind::Gated => 2 * cfg.n_inner,
        _ => 4,
    }
}

/// Bytes of the KV cache of one sequence: keys and values of every layer and position it
/// holds (batches of at most `batch` tokens).
pub(crate) fn kv_cache_bytes(cfg: &Config, kv: KvDtype, batch: usize) -> u64 {
    (0..cfg.n_layer)
        .map(|l| kv_layer_bytes(cfg, kv, l, batch))
        .sum()
}

/// Bytes of layer `l`'s cache of one sequence: (2, rows, K).
pub(crate) fn kv_layer_bytes(cfg: &Config, kv: KvDtype, l: usize, batch: usize) -> u64 {
    2 * cache_rows(cfg, l, batch) as u64 * cfg.heads().kv_c() as u64 * kv.bytes() as u64
}

/// Bytes of the largest layer cache of one sequence (a global layer's, where there is one).
pub(crate) fn kv_largest_layer_bytes(cfg: &Config, kv: KvDtype, batch: usize) -> u64 {
    (0..cfg.n_layer)
        .map(|l| kv_layer_bytes(cfg, kv, l, batch))
        .max()
        .unwrap_or(0)
}

/// Bytes of activations and KV cache a session needs (for limit checks before allocating).
pub(crate) fn session_bytes(cfg: &Config, kv: KvDtype, max_batch: usize, logit_rows: usize) -> u64 {
    let (b, c, f) = (max_batch as u64, cfg.n_embd as u64, cfg.n_inner as u64);
    let e = cfg.embedding_dim() as u64;
    let h = cfg.heads();
    let (q, qkv, gu) = (h.q_c() as u64, h.qkv_c() as u64, gate_up_width(cfg) as u64);
    let act = b * (c * 4 + q + qkv + f + gu + e) * 4 + 5 * X_WINDOW;
    let logits = 2 * logit_rows as u64 * cfg.vocab_size as u64 * 4;
    kv_cache_bytes(cfg, kv, max_batch) + act + logits + ARGMAX_BYTES as u64 + 2 * 8
}

/// A matmul input: also bindable as a uniform window (see `matmul_block.wgsl`), with slack.
fn matmul_input(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64 + X_WINDOW,
        wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::UNIFORM
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    )
}

fn storage(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    )
}

/// A mappable copy of the argmax winner (f32 bits, index).
fn winner(gpu: &Gpu) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    gpu.buffer("winner", 8, usage)
}

impl Activations {
    pub(crate) fn new(
        gpu: &Gpu,
        cfg: &Config,
        kv: KvDtype,
        b: usize,
        logit_rows: usize,
        slots: usize,
    ) -> Result<Self> {
        let (c, f, v, e) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.embedding_dim());
        let h = cfg.heads();
        let f32s = 4;
        let mut kv_cache = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let bytes = slots as u64 * kv_layer_bytes(cfg, kv, l, b);
            kv_cache.push(Cache {
                buf: storage(gpu, &format!("kv_cache.{l}"), bytes as usize)?,
                window: cfg.window(l),
                rows: cache_rows(cfg, l, b),
            });
        }
        Ok(Activations {
            step: step_uniform(gpu),
            tokens: storage(gpu, "tokens", b * 4)?,
            x: matmul_input(gpu, "x", b * c * f32s)?,
            ln: matmul_input(gpu, "ln", b * c * f32s)?,
            ln2: matmul_input(gpu, "ln2", b * c * f32s)?,
            qkv: storage(gpu, "qkv", b * h.qkv_c() * f32s)?,
            att: matmul_input(gpu, "att", b * h.q_c() * f32s)?,
            fc: matmul_input(gpu, "fc", b * f * f32s)?,
            gate_up: storage(gpu, "gate_up", b * gate_up_width(cfg) * f32s)?,
            emb: matmul_input(gpu, "emb", b * e * f32s)?,
            kv_cache,
            logits: storage(gpu, "logits", logit_rows * v * f32s)?,
            best: storage(gpu, "best", ARGMAX_BYTES)?,
            staging: gpu.buffer(
                "staging",
                (logit_rows * v * f32s) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?,
            winner: [winner(gpu)?, winner(gpu)?],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gemma 3 1B at its whole context of 32768 in f16: 4 global layers hold every position,
    /// the 22 sliding-window layers a ring of 512 + 511 positions (prefill chunks of 512).
    /// One position of one layer is 2 (k, v) × 1 head × 256 × 2 bytes.
    #[test]
    fn sliding_window_layers_hold_only_their_window() {
        let mut cfg = Config::preset("gemma3-1b").unwrap();
        cfg.n_ctx = 32_768;
        let per_position = 2 * 256 * 2;
        let ring = kv_cache_bytes(&cfg, KvDtype::F16, 512);
        assert_eq!(ring, (4 * 32_768 + 22 * 1023) * per_position);
        assert_eq!(
            kv_largest_layer_bytes(&cfg, KvDtype::F16, 512),
            32_768 * per_position
        );
        // 157 MB instead of the 872 MB that every layer at the whole context would take.
        cfg.windows.iter_mut().for_each(|w| *w = None);
        assert_eq!(
            kv_cache_bytes(&cfg, KvDtype::F16, 512),
            26 * 32_768 * per_position
        );
    }
}
