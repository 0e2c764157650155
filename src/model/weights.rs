//! Weights on the GPU, in the one layout every family's forward pass reads: each family's
//! module lists its tensors ([`TensorSpec`]) and fills [`Weights`] through an [`Uploader`],
//! which checks every tensor against the list, converts it to the storage format and uploads
//! it one tensor at a time; matrices as textures (see `kernels::WeightMatrix`).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{matrix_bytes, WeightDtype, WeightMatrix};
use crate::loader::{Source, Tensor};

/// How a file tensor is stored on the GPU, for byte counts and device-fit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A (K, N) weight matrix texture of its own, in the storage format.
    Matrix { k: usize, n: usize },
    /// Part of the matrix or vector listed before it (q/k/v fused at upload): no bytes of
    /// its own, and the list's entry for the fused matrix has the whole shape.
    Within,
    /// The (V, C) token embedding, stored transposed as (C, V) textures split by vocabulary.
    Embedding { v: usize, c: usize },
    /// An f32 storage buffer of this many elements (biases, norms, position tables).
    F32 { len: usize },
    /// An f32 buffer made at upload, not read from the file (rotary tables).
    Generated { len: usize },
}

/// One tensor a family reads: its canonical name, its shape in the file and how it is stored.
#[derive(Debug, Clone)]
pub(crate) struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: Stored,
}

/// Every tensor of a model, in load order: the one list parameter counts, weight bytes,
/// device-fit checks and the file check read.
pub(crate) struct TensorList(pub Vec<TensorSpec>);

impl TensorList {
    pub fn new() -> Self {
        TensorList(Vec::new())
    }

    /// A tensor of `shape` in the file, stored as `stored`.
    pub fn push(&mut self, name: String, shape: Vec<usize>, stored: Stored) {
        self.0.push(TensorSpec {
            name,
            shape,
            stored,
        });
    }

    /// An (out, in) `nn.Linear` weight, stored as a (in, out) matrix.
    pub fn linear_weight(&mut self, name: String, k: usize, n: usize) {
        self.push(name, vec![n, k], Stored::Matrix { k, n });
    }

    /// A GPT-2 `Conv1D` weight, stored (in, out) as the matrix itself.
    pub fn conv1d_weight(&mut self, name: String, k: usize, n: usize) {
        self.push(name, vec![k, n], Stored::Matrix { k, n });
    }

    /// A tensor fused into the matrix before it at upload (`shape` as in the file).
    pub fn within(&mut self, name: String, shape: Vec<usize>) {
        self.push(name, shape, Stored::Within);
    }

    /// A vector kept in f32.
    pub fn vector(&mut self, name: String, len: usize) {
        self.push(name, vec![len], Stored::F32 { len });
    }

    /// A LayerNorm's weight and bias, (c) each.
    pub fn norm(&mut self, prefix: &str, c: usize) {
        self.vector(format!("{prefix}.weight"), c);
        self.vector(format!("{prefix}.bias"), c);
    }

    /// An (rows, c) table kept in f32, of which `used` rows are uploaded.
    pub fn table(&mut self, name: String, rows: usize, c: usize, used: usize) {
        self.push(name, vec![rows, c], Stored::F32 { len: used * c });
    }

    /// An f32 buffer made at upload rather than read from the file (no parameters).
    pub fn generated(&mut self, name: String, len: usize) {
        self.push(name, vec![0], Stored::Generated { len });
    }

    /// A (V, C) token embedding or LM head.
    pub fn embedding(&mut self, name: String, v: usize, c: usize) {
        self.push(name, vec![v, c], Stored::Embedding { v, c });
    }

    /// Number of parameters; `u64::MAX` on overflow (only an invalid config can).
    pub fn params(&self) -> u64 {
        self.0
            .iter()
            .try_fold(0u64, |acc, t| {
                let n = t
                    .shape
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
                acc.checked_add(n)
            })
            .unwrap_or(u64::MAX)
    }

    /// Bytes of weights on the GPU with matrices in `dtype`.
    pub fn gpu_bytes(&self, dtype: WeightDtype) -> u64 {
        self.0
            .iter()
            .map(|t| match t.stored {
                Stored::Matrix { k, n } => matrix_bytes(k, n, dtype),
                Stored::Embedding { v, c } => matrix_bytes(c, v, dtype),
                Stored::F32 { len } | Stored::Generated { len } => len as u64 * 4,
                Stored::Within => 0,
            })
            .sum()
    }
}

/// A linear layer: W (K, N) in the storage format, bias (N) f32 (zeros where it has none).
pub(crate) struct Linear {
    pub w: WeightMatrix,
    pub b: wgpu::Buffer,
}

/// LayerNorm gamma and beta, (C) f32 each; or RMSNorm's weight, with zeros for beta.
pub(crate) struct Norm {
    pub gamma: wgpu::Buffer,
    pub beta: wgpu::Buffer,
    /// RMSNorm: no centring, and beta is zeros.
    pub rms: bool,
}

/// A (V, C) matrix stored transposed, (C, V), and split by vocabulary ranges so that no
/// texture exceeds the device's limits.
pub(crate) struct RowChunks {
    /// ((C, rows) matrix, first row, one past the last row)
    pub chunks: Vec<(WeightMatrix, usize, usize)>,
}

/// One decoder layer: attention and feed-forward, each with its LayerNorm. Every family has
/// these six; the order they run in is the family's forward pass.
pub(crate) struct Layer {
    pub attn_norm: Norm,
    /// (C, 3C): queries, keys, values, each head-major.
    pub qkv: Linear,
    /// (C, C)
    pub attn_out: Linear,
    pub mlp_norm: Norm,
    /// (C, F)
    pub mlp_up: Linear,
    /// (F, C)
    pub mlp_down: Linear,
}

pub(crate) struct Weights {
    /// (V, E) token embedding; E is the hidden size unless `project_in` maps it.
    pub wte: RowChunks,
    /// (n_positions, C) f32 learned positions, for families that have them.
    pub wpe: Option<wgpu::Buffer>,
    /// (n_positions, rotary_dims / 2) rotary (cos, sin), for families with rotary positions.
    pub rope: Option<wgpu::Buffer>,
    /// (E, C) and (C, E): OPT's projections where the embedding width E differs from C.
    pub project_in: Option<Linear>,
    pub project_out: Option<Linear>,
    pub layers: Vec<Layer>,
    /// The LayerNorm after the last layer, where the family has one.
    pub final_norm: Option<Norm>,
    /// Untied LM head; `None` means the head is `wte`.
    pub lm_head: Option<RowChunks>,
    /// (max(V, F, C)) zeros: the bias of layers without one.
    pub zeros: wgpu::Buffer,
    /// Bytes allocated on the GPU for weights.
    pub bytes: u64,
}

impl Weights {
    /// The parts every family has; positions, rotary table and projections are set by the
    /// families that have them (`Weights { wpe: Some(…), ..Weights::new(…) }`).
    pub fn new(
        wte: RowChunks,
        layers: Vec<Layer>,
        final_norm: Option<Norm>,
        lm_head: Option<RowChunks>,
        zeros: wgpu::Buffer,
    ) -> Self {
        Weights {
            wte,
            wpe: None,
            rope: None,
            project_in: None,
            project_out: None,
            layers,
            final_norm,
            lm_head,
            zeros,
            bytes: 0,
        }
    }

    /// The LM head matrix (the tied `wte` unless the model has its own).
    pub fn head(&self) -> &RowChunks {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }
}

/// Reads tensors from a source, checked against their expected shapes, and uploads them.
pub(crate) struct Uploader<'a> {
    gpu: &'a Gpu,
    source: &'a Source,
    pub dtype: WeightDtype,
    max_chunk_bytes: u64,
    bytes: u64,
    pending: u64,
}

impl<'a> Uploader<'a> {
    pub fn new(gpu: &'a Gpu, source: &'a Source, dtype: WeightDtype, max_chunk: u64) -> Self {
        Uploader {
            gpu,
            source,
            dtype,
            max_chunk_bytes: max_chunk,
            bytes: 0,
            pending: 0,
        }
    }

    /// A tensor as f32, checked to have `shape`: its data then holds exactly the product of
    /// `shape` elements (the loader checked bytes against shape), which indexing relies on.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t: Tensor<'_> = self.source.tensor(name, shape)?;
        if t.shape != shape {
            return Err(Error::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        Ok(t.to_f32())
    }

    /// Uploads f32 values as a storage buffer.
    pub fn upload(&mut self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.gpu.storage_init(label, bytes)?;
        self.staged(bytes.len() as u64);
        Ok(buf)
    }

    /// W[k, n] = `at(k, n)`, a (K, N) matrix in the storage format.
    pub fn matrix(
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

    pub fn vector(&mut self, name: &str, len: usize) -> Result<wgpu::Buffer> {
        let v = self.get(name, &[len])?;
        self.upload(name, &v)
    }

    pub fn norm(&mut self, prefix: &str, c: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.vector(&format!("{prefix}.weight"), c)?,
            beta: self.vector(&format!("{prefix}.bias"), c)?,
            rms: false,
        })
    }

    /// An RMSNorm's weight, (c), with zeros bound as its beta.
    pub fn rms_norm(&mut self, prefix: &str, c: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.vector(&format!("{prefix}.weight"), c)?,
            beta: self.upload(&format!("{prefix}.bias (zeros)"), &vec![0.0; c])?,
            rms: true,
        })
    }

    /// A GPT-2 `Conv1D`: weight stored (K, N) like the matrix the kernels use, bias (N).
    pub fn conv1d(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let w = self.get(&name, &[k, n])?;
        let w = self.matrix(&name, k, n, |kk, nn| w[kk * n + nn])?;
        let b = self.vector(&format!("{prefix}.bias"), n)?;
        Ok(Linear { w, b })
    }

    /// An `nn.Linear` with bias: weight stored (N, K) (out, in), uploaded transposed.
    pub fn linear(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        self.linear_rows(prefix, k, n, |r| r)
    }

    /// An `nn.Linear` whose output features are reordered: column `j` of the uploaded
    /// (K, N) matrix (and bias element `j`) is output row `src_row(j)` of the file's weight.
    pub fn linear_rows(
        &mut self,
        prefix: &str,
        k: usize,
        n: usize,
        src_row: impl Fn(usize) -> usize,
    ) -> Result<Linear> {
        let (wname, bname) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        let w = self.get(&wname, &[n, k])?;
        let b = self.get(&bname, &[n])?;
        let b: Vec<f32> = (0..n).map(|j| b[src_row(j)]).collect();
        let w = self.matrix(&wname, k, n, |kk, nn| w[src_row(nn) * k + kk])?;
        let b = self.upload(&bname, &b)?;
        Ok(Linear { w, b })
    }

    /// An `nn.Linear` without bias (a zero bias is bound in its place).
    pub fn linear_no_bias(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let w = self.get(&name, &[n, k])?;
        let w = self.matrix(&name, k, n, |kk, nn| w[nn * k + kk])?;
        let b = self.upload(&format!("{prefix}.bias (zeros)"), &vec![0.0; n])?;
        Ok(Linear { w, b })
    }

    /// Several `nn.Linear` layers over the same input, stacked into one (K, ΣN) matrix in the
    /// order given (separate q, k and v projections fused into one qkv; gate and up): each
    /// part is (prefix, N); `bias`: read each part's bias, else zeros.
    pub fn linears_stacked(
        &mut self,
        parts: &[(&str, usize)],
        k: usize,
        bias: bool,
    ) -> Result<Linear> {
        let mut ws = Vec::with_capacity(parts.len());
        let mut b = Vec::new();
        // (first column, part) of every output column's part.
        let mut owner = Vec::new();
        for (i, &(p, n)) in parts.iter().enumerate() {
            ws.push(self.get(&format!("{p}.weight"), &[n, k])?);
            match bias {
                true => b.extend(self.get(&format!("{p}.bias"), &[n])?),
                false => b.extend(std::iter::repeat_n(0.0, n)),
            }
            owner.extend((0..n).map(|j| (j, i)));
        }
        let label = format!("{} (stacked)", parts[0].0);
        let total = owner.len();
        let w = self.matrix(&label, k, total, |kk, nn| {
            let (j, i) = owner[nn];
            ws[i][j * k + kk]
        })?;
        let b = self.upload(&label, &b)?;
        Ok(Linear { w, b })
    }

    /// Zeros for layers without a bias: (max(V, F, C)) f32.
    pub fn zeros(&mut self, cfg: &crate::config::Config) -> Result<wgpu::Buffer> {
        let n = cfg.vocab_size.max(cfg.n_inner).max(cfg.n_embd);
        self.upload("zeros", &vec![0.0; n])
    }

    /// `n` rows of an (rows, c) f32 table starting at row `first` (OPT's position offset).
    pub fn table(
        &mut self,
        name: &str,
        rows: usize,
        c: usize,
        first: usize,
        n: usize,
    ) -> Result<wgpu::Buffer> {
        let t = self.get(name, &[rows, c])?;
        self.upload(name, &t[first * c..(first + n) * c])
    }

    /// A (V, C) matrix, stored transposed as (C, V) and split by vocabulary ranges (multiples
    /// of 8) so that no texture is taller than the device allows or larger than
    /// `max_chunk_bytes`.
    pub fn row_chunks(&mut self, name: &str, v: usize, c: usize) -> Result<RowChunks> {
        let src = self.get(name, &[v, c])?;
        let max_dim = self.gpu.limits().max_texture_dimension_2d as usize;
        // No cap of its own: each texture is one more dispatch of the embedding and of the LM
        // head per step. (A cap of 8192 rows made no difference on lavapipe once texture rows
        // held one column group for every k; on an H200 the 7 textures of GPT-2 cost 12
        // dispatches per token.)
        let by_height = max_dim * self.dtype.per_texel();
        let by_bytes = (self.max_chunk_bytes / (c * self.dtype.size()) as u64) as usize;
        let rows_per = (by_height.min(by_bytes) / 8 * 8).min(v);
        if rows_per == 0 {
            return Err(Error::DeviceLimits(format!(
                "8 rows of `{name}` ({} bytes) exceed LoadOptions::max_chunk_bytes ({})",
                8 * c * self.dtype.size(),
                self.max_chunk_bytes
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

    /// Bytes uploaded so far; flushes the last staged writes and checks for device errors.
    pub fn finish(self) -> Result<u64> {
        self.gpu.queue.submit([]);
        self.gpu.check()?;
        Ok(self.bytes)
    }
}
