//! Weight matrices on the GPU: W (K, N) for y = x·W as `rgba32uint` textures, 16 bytes per
//! texel. Float formats: texture row r holds the column group W[0..K, r·g..r·g+g] (g = weights
//! per texel: 8 f16 or 4 f32), texel k = W[k, r·g..r·g+g] (`shaders/weights_f*.wgsl`). Block
//! formats: one texture row per 8 columns, ggml's blocks regrouped along k
//! (`crate::format::quant::pack`, `shaders/weights_quant.wgsl`). N is padded to a multiple of 8. The
//! kernels walk k for a fixed group of columns, so each invocation streams through contiguous
//! memory.
//!
//! A matrix may consist of column ranges stored in different formats ([`Part`]): a GGUF file's
//! q, k and v projections, stacked into one matrix, can be Q4_K, Q4_K and Q6_K. The matmul
//! runs one launch per part.

use super::WeightDtype;
use crate::error::{Error, Result};
use crate::format::quant::pack::{pack_rows, Layout};
use crate::format::DType;
use crate::gpu::Gpu;

/// Columns `n0..n0 + n` of a weight matrix, in one storage format.
pub(crate) struct Part {
    pub view: wgpu::TextureView,
    pub dtype: WeightDtype,
    /// First column of the matrix this part holds.
    pub n0: usize,
    /// Columns it holds.
    pub n: usize,
}

/// A (K, N) weight matrix uploaded as textures: it knows its storage formats and shape, so
/// the kernels that read it pick the matching reader.
pub(crate) struct WeightMatrix {
    /// Column ranges in order, covering 0..N.
    pub parts: Vec<Part>,
    /// Input features K (walked along a texture row).
    pub k: usize,
    /// Output features N.
    pub n: usize,
    /// Bytes on the GPU.
    pub bytes: u64,
}

/// Where the columns of one part come from.
pub(crate) enum Columns<'f, 'd> {
    /// W[k, n] = `at(k, n)` for n in the part, stored in the given float or block format (the
    /// block formats quantized here with ggml's reference quantization: Q8_0 and Q4_0).
    Values(&'f dyn Fn(usize, usize) -> f32),
    /// Column n is the file row `row(n)`: K weights as ggml blocks of `dtype`.
    Blocks(DType, &'f dyn Fn(usize) -> &'d [u8]),
}

impl WeightDtype {
    /// Columns per texture row (float formats: weights per 16-byte texel).
    pub(crate) fn per_texel(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 8,
            _ => 8,
        }
    }
}

/// Texels per texture row of a matrix with K = `k` (`None`: the format cannot hold rows of k).
fn row_texels(k: usize, dtype: WeightDtype) -> Option<usize> {
    match Layout::of(dtype.file_dtype()) {
        None => Some(k),
        Some(l) => k
            .is_multiple_of(dtype.file_dtype().block_len())
            .then(|| l.row_texels(k)),
    }
}

/// The format a (k, ·) matrix requested in `dtype` is stored in: rows too short for whole
/// blocks stay f16 (as llama-quantize keeps such tensors in a wider format).
pub(crate) fn storage_for(k: usize, dtype: WeightDtype) -> WeightDtype {
    match row_texels(k, dtype) {
        Some(_) => dtype,
        None => WeightDtype::F16,
    }
}

/// Bytes of a (k, n) weight matrix on the GPU (texture row pitch not counted).
pub(crate) fn matrix_bytes(k: usize, n: usize, dtype: WeightDtype) -> u64 {
    let dtype = storage_for(k, dtype);
    let width = row_texels(k, dtype).unwrap_or(k) as u64;
    width * 16 * texel_rows(n, dtype) as u64
}

/// Texture height of a matrix with `n` columns: one row per group of columns a texel holds.
pub(crate) fn texel_rows(n: usize, dtype: WeightDtype) -> usize {
    n.next_multiple_of(8) / dtype.per_texel()
}

/// Packs W[k, n] = `at(k, n)` into a float format's texture bytes (see the module header).
pub(crate) fn pack_weights(
    k: usize,
    n: usize,
    dtype: WeightDtype,
    at: impl Fn(usize, usize) -> f32,
) -> Vec<u8> {
    let np = n.next_multiple_of(8);
    let g = dtype.per_texel();
    let size = 16 / g;
    let mut out = Vec::with_capacity(k * np * size);
    for group in (0..np).step_by(g) {
        for kk in 0..k {
            for nn in group..group + g {
                let v = if nn < n { at(kk, nn) } else { 0.0 };
                match dtype {
                    WeightDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
                    _ => out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
                }
            }
        }
    }
    out
}

/// Quantizes W[k, n] = `at(k, n)` column by column with ggml's reference quantization.
fn quantize_columns(
    k: usize,
    n: usize,
    dtype: WeightDtype,
    at: &dyn Fn(usize, usize) -> f32,
) -> Vec<u8> {
    let mut col = vec![0f32; k];
    let mut rows = Vec::with_capacity(n);
    for nn in 0..n {
        for (kk, v) in col.iter_mut().enumerate() {
            *v = at(kk, nn);
        }
        rows.push(match dtype {
            WeightDtype::Q8_0 => crate::format::quant::quantize_q8_0(&col),
            WeightDtype::Q4_0 => crate::format::quant::quantize_q4_0(&col),
            other => unreachable!("no quantization to {other}"),
        });
    }
    pack_rows(dtype.file_dtype(), k, n, |nn| &rows[nn])
}

impl WeightMatrix {
    /// Uploads a (K, ΣN) matrix from parts of (columns, storage format, source), each a
    /// texture of its own; a `Blocks` part is stored in its own block format.
    pub fn from_parts(
        gpu: &Gpu,
        label: &str,
        k: usize,
        parts: &[(usize, WeightDtype, Columns<'_, '_>)],
    ) -> Result<Self> {
        let mut out = WeightMatrix {
            parts: Vec::with_capacity(parts.len()),
            k,
            n: 0,
            bytes: 0,
        };
        for (n, dtype, cols) in parts {
            let (n, dtype) = (*n, *dtype);
            let (dtype, bytes) = match cols {
                Columns::Blocks(file, row) => {
                    let dtype = WeightDtype::for_file(*file);
                    if row_texels(k, dtype).is_none() {
                        return Err(Error::InvalidInput(format!(
                            "weight `{label}`: rows of {k} are not whole {file} blocks"
                        )));
                    }
                    (dtype, pack_rows(*file, k, n, row))
                }
                Columns::Values(at) => {
                    let dtype = storage_for(k, dtype);
                    if dtype == WeightDtype::F16 {
                        check_f16_range(label, k, n, at)?;
                    }
                    let bytes = match dtype {
                        WeightDtype::F32 | WeightDtype::F16 => pack_weights(k, n, dtype, at),
                        q => quantize_columns(k, n, q, at),
                    };
                    (dtype, bytes)
                }
            };
            let width = row_texels(k, dtype).expect("checked above") as u32;
            let height = texel_rows(n, dtype) as u32;
            let tex = gpu.texture_init(label, width, height, &bytes)?;
            out.parts.push(Part {
                view: tex.create_view(&Default::default()),
                dtype,
                n0: out.n,
                n,
            });
            out.n += n;
            out.bytes += bytes.len() as u64;
        }
        Ok(out)
    }

    /// The storage format of a single-part matrix (an embedding chunk).
    pub fn single(&self) -> &Part {
        debug_assert_eq!(self.parts.len(), 1);
        &self.parts[0]
    }
}

/// f16 holds bf16 and f32 weights exactly (to its 11 significant bits) between 2^-24 and
/// 65504 in magnitude; a finite weight beyond would become infinite.
fn check_f16_range(
    label: &str,
    k: usize,
    n: usize,
    at: &dyn Fn(usize, usize) -> f32,
) -> Result<()> {
    let big = (0..k)
        .flat_map(|kk| (0..n).map(move |nn| (kk, nn)))
        .map(|(kk, nn)| at(kk, nn))
        .find(|v| v.is_finite() && v.abs() > f32::from(half::f16::MAX));
    match big {
        Some(v) => Err(Error::InvalidInput(format!(
            "weight `{label}` holds {v}, beyond f16's range (±65504): store it as f32"
        ))),
        None => Ok(()),
    }
}
