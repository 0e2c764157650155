//! Weights on the GPU: every tensor checked against the config, converted to the storage dtype,
//! and uploaded one tensor at a time; matrices as textures (see `kernels::WeightMatrix`).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{WeightDtype, WeightMatrix};
use crate::loader::{Source, Tensor};

/// A linear layer: W (K, N) in the storage dtype, bias (N) f32.
pub(crate) struct Linear {
    pub w: WeightMatrix,
    pub b: wgpu::Buffer,
    pub k: usize,
    pub n: usize,
}

/// LayerNorm gamma and beta, (C) f32 each.
pub(crate) struct Norm {
    pub gamma: wgpu::Buffer,
    pub beta: wgpu::Buffer,
}

/// A (V, C) matrix stored transposed, (C, V), and split by vocabulary ranges so that no
/// texture exceeds the device's limits.
pub(crate) struct RowChunks {
    /// ((C, rows) matrix, first row, one past the last row)
    pub chunks: Vec<(WeightMatrix, usize, usize)>,
}

pub(crate) struct Layer {
    pub ln_1: Norm,
    pub c_attn: Linear,
    pub attn_proj: Linear,
    pub ln_2: Norm,
    pub c_fc: Linear,
    pub mlp_proj: Linear,
}

pub(crate) struct Weights {
    pub dtype: WeightDtype,
    pub wte: RowChunks,
    /// (n_positions, C) f32
    pub wpe: wgpu::Buffer,
    pub layers: Vec<Layer>,
    pub ln_f: Norm,
    /// Untied LM head; `None` means the head is `wte`.
    pub lm_head: Option<RowChunks>,
    /// (V) zeros: the LM head has no bias.
    pub zero_bias: wgpu::Buffer,
    /// Bytes allocated on the GPU for weights.
    pub bytes: u64,
}

impl Weights {
    /// The LM head matrix (the tied `wte` unless the model has its own).
    pub fn head(&self) -> &RowChunks {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }
}

struct Uploader<'a> {
    gpu: &'a Gpu,
    source: &'a Source,
    dtype: WeightDtype,
    bytes: u64,
    pending: u64,
}

impl Uploader<'_> {
    /// A tensor, checked to have `shape`: its data then holds exactly the product of `shape`
    /// elements (the loader checked bytes against shape), which the indexing below relies on.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor<'_>> {
        let t = self.source.tensor(name, shape)?;
        if t.shape != shape {
            return Err(Error::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        Ok(t)
    }

    fn upload(&mut self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let buf = self.gpu.storage_init(label, data)?;
        self.staged(data.len() as u64);
        Ok(buf)
    }

    /// W[k, n] = `at(k, n)`, a (K, N) matrix.
    fn matrix(
        &mut self,
        label: &str,
        k: usize,
        n: usize,
        at: impl Fn(usize, usize) -> f32,
    ) -> Result<WeightMatrix> {
        let m = WeightMatrix::upload(self.gpu, label, k, n, self.dtype, at)?;
        self.staged(m.bytes);
        Ok(m)
    }

    /// Counts uploaded bytes and flushes staged writes regularly, so that at most ~64 MiB of
    /// host staging exists at once.
    fn staged(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.pending += bytes;
        if self.pending > 64 << 20 {
            self.gpu.queue.submit([]);
            let _ = self.gpu.device.poll(wgpu::PollType::wait_indefinitely());
            self.pending = 0;
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<wgpu::Buffer> {
        let v = self.get(name, &[len])?.to_f32();
        self.upload(name, bytemuck::cast_slice(&v))
    }

    fn norm(&mut self, prefix: &str, c: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.vector(&format!("{prefix}.weight"), c)?,
            beta: self.vector(&format!("{prefix}.bias"), c)?,
        })
    }

    /// A Conv1D weight, stored (K, N) like the matrix the kernels use.
    fn conv1d(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let w = self.get(&name, &[k, n])?.to_f32();
        let w = self.matrix(&name, k, n, |kk, nn| w[kk * n + nn])?;
        let b = self.vector(&format!("{prefix}.bias"), n)?;
        Ok(Linear { w, b, k, n })
    }

    /// A (V, C) matrix, stored transposed as (C, V) and split by vocabulary ranges (multiples
    /// of 8) so that no texture is taller than the device allows or larger than
    /// `max_chunk_bytes`.
    fn row_chunks(
        &mut self,
        name: &str,
        v: usize,
        c: usize,
        max_chunk_bytes: u64,
    ) -> Result<RowChunks> {
        let m = self.get(name, &[v, c])?;
        let src = m.to_f32();
        drop(m);
        let max_dim = self.gpu.limits().max_texture_dimension_2d as usize;
        // No cap of its own: each texture is one more dispatch of the embedding and of the LM
        // head per step. (A cap of 8192 rows made no difference on lavapipe once texture rows
        // held one column group for every k; on an H200 the 7 textures of GPT-2 cost 12
        // dispatches per token.)
        let by_height = max_dim * self.dtype.per_texel();
        let by_bytes = (max_chunk_bytes / (c * self.dtype.size()) as u64) as usize;
        let rows_per = (by_height.min(by_bytes) / 8 * 8).min(v);
        if rows_per == 0 {
            return Err(Error::DeviceLimits(format!(
                "8 rows of `{name}` ({} bytes) exceed LoadOptions::max_chunk_bytes ({max_chunk_bytes})",
                8 * c * self.dtype.size()
            )));
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < v {
            let end = (start + rows_per).min(v);
            let m = self.matrix(name, c, end - start, |kk, nn| src[(start + nn) * c + kk])?;
            chunks.push((m, start, end));
            start = end;
        }
        if chunks.len() > 1 {
            log::info!(
                "`{name}` split into {} textures of ≤ {rows_per} rows",
                chunks.len()
            );
        }
        Ok(RowChunks { chunks })
    }
}

/// Uploads all weights. `max_chunk_bytes` bounds each embedding / LM-head texture.
pub(crate) fn upload(
    gpu: &Gpu,
    cfg: &Config,
    source: &Source,
    dtype: WeightDtype,
    max_chunk_bytes: u64,
) -> Result<Weights> {
    let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
    let mut up = Uploader {
        gpu,
        source,
        dtype,
        bytes: 0,
        pending: 0,
    };
    let wte = up.row_chunks("wte.weight", v, c, max_chunk_bytes)?;
    let wpe = {
        let t = up.get("wpe.weight", &[cfg.n_positions, c])?.to_f32();
        up.upload("wpe.weight", bytemuck::cast_slice(&t))?
    };
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        layers.push(Layer {
            ln_1: up.norm(&p("ln_1"), c)?,
            c_attn: up.conv1d(&p("attn.c_attn"), c, 3 * c)?,
            attn_proj: up.conv1d(&p("attn.c_proj"), c, c)?,
            ln_2: up.norm(&p("ln_2"), c)?,
            c_fc: up.conv1d(&p("mlp.c_fc"), c, f)?,
            mlp_proj: up.conv1d(&p("mlp.c_proj"), f, c)?,
        });
    }
    let ln_f = up.norm("ln_f", c)?;
    let lm_head = if cfg.tie_word_embeddings {
        None
    } else {
        Some(up.row_chunks("lm_head.weight", v, c, max_chunk_bytes)?)
    };
    let zero_bias = up.upload("zero_bias", &vec![0u8; v * 4])?;
    gpu.queue.submit([]);
    gpu.check()?;
    Ok(Weights {
        dtype,
        wte,
        wpe,
        layers,
        ln_f,
        lm_head,
        zero_bias,
        bytes: up.bytes,
    })
}
