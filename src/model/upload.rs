//! [`Uploader`]: reads each tensor a family lists from the [`Source`], checked against its
//! expected shape, converts it to the storage format and uploads it, one tensor at a time.

use std::borrow::Cow;

use super::weights::{Linear, Norm, RowChunks};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::{DType, Tensor};
use crate::gpu::Gpu;
use crate::kernels::{matrix_bytes, Columns, WeightDtype, WeightMatrix};
use crate::model::source::Source;

/// A vocabulary range of an embedding being uploaded.
struct ChunkSrc<'a> {
    data: std::rc::Rc<MatrixData<'a>>,
    start: usize,
}

/// Reads tensors from a source, checked against their expected shapes, and uploads them.
pub(crate) struct Uploader<'a> {
    gpu: &'a Gpu,
    source: &'a Source,
    /// The storage format of matrices read as values (f32, f16 or bf16 in the file); `None`:
    /// the file's own (f16 stays f16, f32 and bf16 become f32).
    pub dtype: Option<WeightDtype>,
    /// Matrices stored in a block format in the file are dequantized to `dtype` (which is then
    /// f32 or f16) instead of staying in their format.
    pub dequantize_blocks: bool,
    max_chunk_bytes: u64,
    bytes: u64,
    pending: u64,
}

/// A matrix tensor as read from the source.
enum MatrixData<'a> {
    /// f32 values of the file's (N, K) rows, or of a `Conv1D`'s (K, N) when `kn`; `file`:
    /// the tensor's type in the file.
    Values {
        v: Vec<f32>,
        kn: bool,
        n: usize,
        file: DType,
    },
    /// N rows of K weights in a ggml block format, `row_bytes` each.
    Blocks {
        dtype: DType,
        data: Cow<'a, [u8]>,
        row_bytes: usize,
    },
}

/// One tensor's part of a matrix being uploaded: `n` output columns, column j being the
/// tensor's output row `map(j)`.
struct Src<'a> {
    data: MatrixData<'a>,
    n: usize,
    map: Box<dyn Fn(usize) -> usize + 'a>,
}

impl Src<'_> {
    /// How the part is stored: `None` for values (in `storage`), else its block format.
    fn kind(&self) -> Option<DType> {
        match self.data {
            MatrixData::Values { .. } => None,
            MatrixData::Blocks { dtype, .. } => Some(dtype),
        }
    }

    /// The file type of a values part.
    fn file(&self) -> DType {
        match self.data {
            MatrixData::Values { file, .. } => file,
            MatrixData::Blocks { dtype, .. } => dtype,
        }
    }

    /// W[kk, j] of a values part with K = `k`.
    fn value(&self, k: usize, kk: usize, j: usize) -> f32 {
        match &self.data {
            MatrixData::Values { v, kn: true, n, .. } => v[kk * n + (self.map)(j)],
            MatrixData::Values { v, kn: false, .. } => v[(self.map)(j) * k + kk],
            MatrixData::Blocks { .. } => unreachable!("a values part"),
        }
    }

    /// The file row of column j of a blocks part.
    fn row(&self, j: usize) -> &[u8] {
        match &self.data {
            MatrixData::Blocks {
                data, row_bytes, ..
            } => {
                let r = (self.map)(j);
                &data[r * row_bytes..(r + 1) * row_bytes]
            }
            MatrixData::Values { .. } => unreachable!("a blocks part"),
        }
    }
}

impl<'a> Uploader<'a> {
    /// The storage format of a matrix the file holds as `file` values.
    fn storage(&self, file: DType) -> WeightDtype {
        self.dtype.unwrap_or(match file {
            DType::F16 => WeightDtype::F16,
            _ => WeightDtype::F32,
        })
    }

    pub fn new(
        gpu: &'a Gpu,
        source: &'a Source,
        dtype: Option<WeightDtype>,
        max_chunk: u64,
    ) -> Self {
        Uploader {
            gpu,
            source,
            dtype,
            dequantize_blocks: false,
            max_chunk_bytes: max_chunk,
            bytes: 0,
            pending: 0,
        }
    }

    /// A tensor as f32, checked to have `shape`: its data then holds exactly the product of
    /// `shape` elements (the loader checked bytes against shape), which indexing relies on.
    /// A tensor stored transposed (`Tensor::transposed`) is transposed back.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t: Tensor<'_> = self.source.tensor(name, shape)?;
        let stored: Vec<usize> = match t.transposed {
            true => shape.iter().rev().copied().collect(),
            false => shape.to_vec(),
        };
        if t.shape != stored {
            return Err(Error::Shape {
                name: name.into(),
                expected: stored,
                actual: t.shape.clone(),
            });
        }
        let v = t.to_f32();
        if t.transposed && shape.len() == 2 {
            let (r, c) = (shape[0], shape[1]);
            return Ok((0..r * c).map(|i| v[(i % c) * r + i / c]).collect());
        }
        Ok(v)
    }

    /// A weight of N output rows of K inputs: an `nn.Linear`'s (N, K), or with `conv1d` a
    /// GPT-2 `Conv1D`'s (K, N) (which a GGUF file stores as (N, K) rows, `transposed`).
    fn matrix_data(&self, name: &str, k: usize, n: usize, conv1d: bool) -> Result<MatrixData<'a>> {
        let listed = if conv1d { vec![k, n] } else { vec![n, k] };
        let t: Tensor<'a> = self.source.tensor(name, &listed)?;
        if t.dtype.is_quantized() && !self.dequantize_blocks {
            // Block formats are stored by rows: (N, K), whatever the family lists.
            if t.shape != [n, k] || t.transposed != conv1d {
                return Err(Error::Shape {
                    name: name.into(),
                    expected: vec![n, k],
                    actual: t.shape.clone(),
                });
            }
            let row_bytes = t.dtype.bytes_of(k).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "tensor `{name}`: rows of {k} are not whole {} blocks",
                    t.dtype
                ))
            })?;
            return Ok(MatrixData::Blocks {
                dtype: t.dtype,
                data: t.data,
                row_bytes,
            });
        }
        let file = t.dtype;
        drop(t);
        let v = self.get(name, &listed)?;
        Ok(MatrixData::Values {
            v,
            kn: conv1d,
            n,
            file,
        })
    }

    /// Uploads a (K, ΣN) matrix from parts; parts read as values, or in the same block
    /// format, share one texture (one launch); a stacked matrix whose parts differ in format
    /// gets one texture per run of equal formats.
    fn upload_matrix<'s>(
        &mut self,
        label: &str,
        k: usize,
        srcs: &'s [Src<'_>],
    ) -> Result<WeightMatrix> {
        // Runs of consecutive parts of the same kind.
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for i in 0..srcs.len() {
            match runs.last_mut() {
                Some(r)
                    if srcs[r.start].kind() == srcs[i].kind()
                        && self.storage(srcs[r.start].file()) == self.storage(srcs[i].file()) =>
                {
                    r.end = i + 1
                }
                _ => runs.push(i..i + 1),
            }
        }
        // (part, column within it) of each column of each run.
        let owners: Vec<Vec<(usize, usize)>> = runs
            .iter()
            .map(|r| {
                r.clone()
                    .flat_map(|i| (0..srcs[i].n).map(move |j| (i, j)))
                    .collect()
            })
            .collect();
        let values: Vec<Box<dyn Fn(usize, usize) -> f32 + '_>> = owners
            .iter()
            .map(|o| {
                Box::new(move |kk: usize, j: usize| {
                    let (i, jj) = o[j];
                    srcs[i].value(k, kk, jj)
                }) as Box<dyn Fn(usize, usize) -> f32>
            })
            .collect();
        let rows: Vec<Box<dyn Fn(usize) -> &'s [u8] + '_>> = owners
            .iter()
            .map(|o| {
                Box::new(move |j: usize| {
                    let (i, jj) = o[j];
                    srcs[i].row(jj)
                }) as Box<dyn Fn(usize) -> &'s [u8]>
            })
            .collect();
        let parts: Vec<(usize, WeightDtype, Columns<'_, 's>)> = runs
            .iter()
            .enumerate()
            .map(|(r, run)| {
                let n = owners[r].len();
                match srcs[run.start].kind() {
                    None => (
                        n,
                        self.storage(srcs[run.start].file()),
                        Columns::Values(&*values[r]),
                    ),
                    Some(d) => (n, WeightDtype::for_file(d), Columns::Blocks(d, &*rows[r])),
                }
            })
            .collect();
        let m = WeightMatrix::from_parts(self.gpu, label, k, &parts)?;
        self.staged(m.bytes);
        Ok(m)
    }

    /// One tensor as a whole matrix part.
    fn src(&self, name: &str, k: usize, n: usize, conv1d: bool) -> Result<Src<'a>> {
        Ok(Src {
            data: self.matrix_data(name, k, n, conv1d)?,
            n,
            map: Box::new(|j| j),
        })
    }

    /// Uploads f32 values as a storage buffer.
    pub fn upload(&mut self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.gpu.storage_init(label, bytes)?;
        self.staged(bytes.len() as u64);
        Ok(buf)
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

    /// The dtype a checkpoint file stores tensor `name` in (`None` for GGUF files and
    /// synthetic weights, whose values the model reads as f32).
    pub fn file_dtype(&self, name: &str, shape: &[usize]) -> Result<Option<DType>> {
        Ok(match self.source {
            Source::Files(_) => Some(self.source.tensor(name, shape)?.dtype),
            _ => None,
        })
    }

    /// Whether the tensors come from a GGUF file (whose converter may have transformed them:
    /// Gemma's norm weights are stored as `1 + w`).
    pub fn reads_gguf(&self) -> bool {
        matches!(self.source, Source::Gguf(_))
    }

    /// An RMSNorm's weight plus `offset` (Gemma's `x·(1 + w)`: offset 1, added in f32 as HF
    /// does), (c), with zeros bound as its beta.
    pub fn rms_norm_offset(&mut self, prefix: &str, c: usize, offset: f32) -> Result<Norm> {
        let name = format!("{prefix}.weight");
        let w: Vec<f32> = self.get(&name, &[c])?.iter().map(|x| x + offset).collect();
        Ok(Norm {
            gamma: self.upload(&name, &w)?,
            beta: self.upload(&format!("{prefix}.bias (zeros)"), &vec![0.0; c])?,
            rms: true,
        })
    }

    /// An RMSNorm's weight, (c), with zeros bound as its beta.
    pub fn rms_norm(&mut self, prefix: &str, c: usize) -> Result<Norm> {
        self.rms_norm_offset(prefix, c, 0.0)
    }

    /// A GPT-2 `Conv1D`: weight stored (K, N) like the matrix the kernels use, bias (N).
    pub fn conv1d(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let src = self.src(&name, k, n, true)?;
        let w = self.upload_matrix(&name, k, &[src])?;
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
        let b = self.get(&bname, &[n])?;
        let b: Vec<f32> = (0..n).map(|j| b[src_row(j)]).collect();
        let src = Src {
            data: self.matrix_data(&wname, k, n, false)?,
            n,
            map: {
                let rows: Vec<usize> = (0..n).map(&src_row).collect();
                Box::new(move |j| rows[j])
            },
        };
        let w = self.upload_matrix(&wname, k, &[src])?;
        let b = self.upload(&bname, &b)?;
        Ok(Linear { w, b })
    }

    /// An `nn.Linear` without bias (a zero bias is bound in its place).
    pub fn linear_no_bias(&mut self, prefix: &str, k: usize, n: usize) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let src = self.src(&name, k, n, false)?;
        let w = self.upload_matrix(&name, k, &[src])?;
        let b = self.upload(&format!("{prefix}.bias (zeros)"), &vec![0.0; n])?;
        Ok(Linear { w, b })
    }

    /// Several `nn.Linear` layers over the same input, stacked into one (K, ΣN) matrix in the
    /// order given (separate q, k and v projections fused into one qkv; gate and up): each
    /// part is (prefix, N); `bias`: read each part's bias, else zeros.
    pub fn linears_stacked(
        &mut self,
        parts: &[(impl AsRef<str>, usize)],
        k: usize,
        bias: bool,
    ) -> Result<Linear> {
        let mut srcs = Vec::with_capacity(parts.len());
        let mut b = Vec::new();
        for (p, n) in parts {
            let (p, n) = (p.as_ref(), *n);
            srcs.push(self.src(&format!("{p}.weight"), k, n, false)?);
            match bias {
                true => b.extend(self.get(&format!("{p}.bias"), &[n])?),
                false => b.extend(std::iter::repeat_n(0.0, n)),
            }
        }
        let label = format!("{} (stacked)", parts[0].0.as_ref());
        let w = self.upload_matrix(&label, k, &srcs)?;
        let b = self.upload(&label, &b)?;
        Ok(Linear { w, b })
    }

    /// Zeros for layers without a bias: (max(V, F, C)) f32.
    pub fn zeros(&mut self, cfg: &Config) -> Result<wgpu::Buffer> {
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

    /// The (V, C) LM head `name` as [`Uploader::row_chunks`], where the checkpoint does not tie
    /// it to the token embedding (`None` where it does).
    pub fn untied_head(&mut self, cfg: &Config, name: &str, c: usize) -> Result<Option<RowChunks>> {
        match cfg.tie_word_embeddings {
            true => Ok(None),
            false => self.row_chunks(name, cfg.vocab_size, c).map(Some),
        }
    }

    /// A (V, C) matrix, stored transposed as (C, V) and split by vocabulary ranges (multiples
    /// of 8) so that no texture is taller than the device allows or larger than
    /// `max_chunk_bytes`.
    pub fn row_chunks(&mut self, name: &str, v: usize, c: usize) -> Result<RowChunks> {
        let data = self.matrix_data(name, c, v, false)?;
        let dtype = match &data {
            MatrixData::Blocks { dtype, .. } => WeightDtype::for_file(*dtype),
            MatrixData::Values { file, .. } => crate::kernels::storage_for(c, self.storage(*file)),
        };
        let max_dim = self.gpu.limits().max_texture_dimension_2d as usize;
        // No cap of its own: each texture is one more dispatch of the embedding and of the LM
        // head per step. (A cap of 8192 rows made no difference on lavapipe once texture rows
        // held one column group for every k; on an H200 the 7 textures of GPT-2 cost 12
        // dispatches per token.)
        let by_height = max_dim * dtype.per_texel();
        let row_bytes = (matrix_bytes(c, 8, dtype) / 8).max(1);
        let by_bytes = (self.max_chunk_bytes / row_bytes) as usize;
        let rows_per = (by_height.min(by_bytes) / 8 * 8).min(v);
        if rows_per == 0 {
            return Err(Error::DeviceLimits(format!(
                "8 rows of `{name}` ({} bytes) exceed LoadOptions::max_chunk_bytes ({})",
                8 * row_bytes,
                self.max_chunk_bytes
            )));
        }
        let shared = std::rc::Rc::new(data);
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < v {
            let end = (start + rows_per).min(v);
            let src = ChunkSrc {
                data: shared.clone(),
                start,
            };
            let m = self.upload_chunk(name, c, end - start, &src)?;
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

    /// Rows `start..start + n` of a (V, C) embedding as a (C, n) matrix.
    fn upload_chunk(
        &mut self,
        name: &str,
        c: usize,
        n: usize,
        src: &ChunkSrc<'_>,
    ) -> Result<WeightMatrix> {
        let (start, data) = (src.start, &*src.data);
        let values = |kk: usize, j: usize| match data {
            MatrixData::Values { v, .. } => v[(start + j) * c + kk],
            MatrixData::Blocks { .. } => unreachable!("a values part"),
        };
        let rows = |j: usize| match data {
            MatrixData::Blocks {
                data, row_bytes, ..
            } => &data[(start + j) * row_bytes..(start + j + 1) * row_bytes],
            MatrixData::Values { .. } => unreachable!("a blocks part"),
        };
        let part = match data {
            MatrixData::Values { file, .. } => (n, self.storage(*file), Columns::Values(&values)),
            MatrixData::Blocks { dtype, .. } => (
                n,
                WeightDtype::for_file(*dtype),
                Columns::Blocks(*dtype, &rows),
            ),
        };
        let m = WeightMatrix::from_parts(self.gpu, name, c, &[part])?;
        self.staged(m.bytes);
        Ok(m)
    }

    /// Bytes uploaded so far; flushes the last staged writes and checks for device errors.
    pub fn finish(self) -> Result<u64> {
        self.gpu.queue.submit([]);
        self.gpu.check()?;
        Ok(self.bytes)
    }
}
