//! Weight matrices on the GPU: W (K, N) for y = x·W as an `rgba32uint` texture, 16 bytes per
//! texel, packed in the storage dtype (`shaders/weights_*.wgsl` read it back). Texture row r
//! holds the column group W[0..K, r·g..r·g+g] (g = weights per texel: 8 f16 or 4 f32), texel
//! k = W[k, r·g..r·g+g]; N is padded to a multiple of 8. The kernels walk k for a fixed group
//! of columns, so each invocation streams through contiguous memory.

use super::WeightDtype;
use crate::error::Result;
use crate::gpu::Gpu;

/// A (K, N) weight matrix uploaded as a texture: it knows its storage format and shape, so
/// the kernels that read it pick the matching reader.
pub(crate) struct WeightMatrix {
    pub view: wgpu::TextureView,
    /// Storage format of the weights.
    pub dtype: WeightDtype,
    /// Input features K (texture width).
    pub k: usize,
    /// Output features N.
    pub n: usize,
    /// Bytes on the GPU.
    pub bytes: u64,
}

impl WeightDtype {
    /// Weights per 16-byte texel.
    pub(crate) fn per_texel(self) -> usize {
        16 / self.size()
    }
}

/// Bytes of a (k, n) weight matrix on the GPU: k rows of n padded to a multiple of 8 (texture
/// row pitch not counted).
pub(crate) fn matrix_bytes(k: usize, n: usize, dtype: WeightDtype) -> u64 {
    (k * n.next_multiple_of(8) * dtype.size()) as u64
}

/// Texture height of a matrix with `n` columns: one row per group of columns a texel holds.
pub(crate) fn texel_rows(n: usize, dtype: WeightDtype) -> usize {
    n.next_multiple_of(8) / dtype.per_texel()
}

/// Packs W[k, n] = `at(k, n)` into the texture's bytes, in the layout of the module header.
pub(crate) fn pack_weights(
    k: usize,
    n: usize,
    dtype: WeightDtype,
    at: impl Fn(usize, usize) -> f32,
) -> Vec<u8> {
    let np = n.next_multiple_of(8);
    let g = dtype.per_texel();
    let mut out = Vec::with_capacity(k * np * dtype.size());
    for group in (0..np).step_by(g) {
        for kk in 0..k {
            for nn in group..group + g {
                let v = if nn < n { at(kk, nn) } else { 0.0 };
                match dtype {
                    WeightDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
                    WeightDtype::F16 => {
                        out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes())
                    }
                }
            }
        }
    }
    out
}

impl WeightMatrix {
    /// Uploads W[k, n] = `at(k, n)`, a (K, N) matrix, in `dtype`.
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        k: usize,
        n: usize,
        dtype: WeightDtype,
        at: impl Fn(usize, usize) -> f32,
    ) -> Result<Self> {
        if dtype == WeightDtype::F16 {
            // f16 holds bf16 and f32 weights exactly (to its 11 significant bits) between
            // 2^-24 and 65504 in magnitude; a finite weight beyond would become infinite.
            let big = (0..k)
                .flat_map(|kk| (0..n).map(move |nn| (kk, nn)))
                .map(|(kk, nn)| at(kk, nn))
                .find(|v| v.is_finite() && v.abs() > f32::from(half::f16::MAX));
            if let Some(v) = big {
                return Err(crate::error::Error::InvalidInput(format!(
                    "weight `{label}` holds {v}, beyond f16's range (±65504): store it as f32"
                )));
            }
        }
        Self::from_packed(gpu, label, k, n, dtype, &pack_weights(k, n, dtype, at))
    }

    /// Uploads bytes made by [`pack_weights`] for a (K, N) matrix.
    pub fn from_packed(
        gpu: &Gpu,
        label: &str,
        k: usize,
        n: usize,
        dtype: WeightDtype,
        bytes: &[u8],
    ) -> Result<Self> {
        let height = texel_rows(n, dtype) as u32;
        let tex = gpu.texture_init(label, k as u32, height, bytes)?;
        Ok(WeightMatrix {
            view: tex.create_view(&Default::default()),
            dtype,
            k,
            n,
            bytes: bytes.len() as u64,
        })
    }
}
