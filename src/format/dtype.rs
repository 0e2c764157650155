//! Element types of stored tensors (safetensors' float types and ggml's block formats) and a
//! tensor's bytes.

use std::borrow::Cow;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (IEEE half).
    F16,
    /// bfloat16 (converted exactly to f32 on loading).
    BF16,
    /// ggml's block formats (GGUF files), with ggml's exact block layouts: 32-weight blocks
    /// (`Q8_0` … `Q5_1`) and 256-weight super-blocks (`Q4K`, `Q5K`, `Q6K`). A tensor in one
    /// of these is a matrix of rows, each `row_len / block_len` blocks (see `crate::quant`).
    /// ggml Q8_0: 32 × i8 and an f16 scale (34 bytes per 32 weights).
    Q8_0,
    /// ggml Q4_0: 32 × 4 bits and an f16 scale (18 bytes).
    Q4_0,
    /// ggml Q4_1: 32 × 4 bits, f16 scale and min (20 bytes).
    Q4_1,
    /// ggml Q5_0: 32 × 5 bits and an f16 scale (22 bytes).
    Q5_0,
    /// ggml Q5_1: 32 × 5 bits, f16 scale and min (24 bytes).
    Q5_1,
    /// ggml Q4_K: 256 × 4 bits in 8 sub-blocks with 6-bit scales and mins (144 bytes).
    Q4K,
    /// ggml Q5_K: 256 × 5 bits in 8 sub-blocks with 6-bit scales and mins (176 bytes).
    Q5K,
    /// ggml Q6_K: 256 × 6 bits in 16 sub-blocks with 8-bit scales (210 bytes).
    Q6K,
}

impl DType {
    /// The dtype of a safetensors header name (`F32`, `F16`, `BF16`), if wgpt supports it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// Weights per block (1 for the float types).
    pub fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => 32,
            DType::Q4K | DType::Q5K | DType::Q6K => 256,
        }
    }

    /// Bytes per block (per element for the float types).
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
        }
    }

    /// Whether this is one of ggml's block formats.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of `n` elements (`None` if `n` is not a whole number of blocks, or overflows).
    pub fn bytes_of(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q4K => "q4_k",
            DType::Q5K => "q5_k",
            DType::Q6K => "q6_k",
        })
    }
}

/// One tensor: dtype, shape and little-endian bytes (borrowed from the map when possible).
/// A tensor in a block format is a matrix stored by rows, shape `[rows, row_len]`, each row
/// `row_len / block_len` blocks.
pub(crate) struct Tensor<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
    /// The data is the transpose of the shape the family lists (a GGUF file stores GPT-2's
    /// `Conv1D` weights, listed (in, out), as (out, in) rows); `shape` is the stored one.
    pub transposed: bool,
}

impl Tensor<'_> {
    /// The values as f32 (an owned copy of this one tensor).
    pub fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            q => crate::format::quant::dequantize(q, d),
        }
    }
}
