//! How weights ([`WeightDtype`]) and the KV cache ([`KvDtype`]) are stored on the GPU, and the
//! WGSL that reads each.

use super::programs::{KV_F16, KV_F32, WEIGHTS_F16, WEIGHTS_F32, WEIGHTS_QUANT};
use crate::format::DType;

/// How weight matrices are stored on the GPU. Arithmetic is f32 in every case; the block
/// formats are ggml's, read by the kernels as they are (`shaders/weights_quant.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (IEEE half).
    F16,
    /// ggml Q8_0: 8-bit weights with an f16 scale per 32 (8.5 bits per weight).
    Q8_0,
    /// ggml Q4_0: 4-bit weights with an f16 scale per 32 (4.5 bits per weight).
    Q4_0,
    /// ggml Q4_1 (GGUF files only).
    Q4_1,
    /// ggml Q5_0 (GGUF files only).
    Q5_0,
    /// ggml Q5_1 (GGUF files only).
    Q5_1,
    /// ggml Q4_K (GGUF files only).
    Q4K,
    /// ggml Q5_K (GGUF files only).
    Q5K,
    /// ggml Q6_K (GGUF files only).
    Q6K,
}

impl WeightDtype {
    /// Every storage format, in the order `shader_sources` lists their programs.
    pub const ALL: [WeightDtype; 10] = [
        WeightDtype::F32,
        WeightDtype::F16,
        WeightDtype::Q8_0,
        WeightDtype::Q4_0,
        WeightDtype::Q4_1,
        WeightDtype::Q5_0,
        WeightDtype::Q5_1,
        WeightDtype::Q4K,
        WeightDtype::Q5K,
        WeightDtype::Q6K,
    ];

    /// The block formats wgpt quantizes float weights to (`LoadOptions::dtype`, `--dtype`);
    /// the others are read from GGUF files only.
    pub const QUANTIZABLE: [WeightDtype; 2] = [WeightDtype::Q8_0, WeightDtype::Q4_0];

    /// The file type with the same encoding.
    pub fn file_dtype(self) -> DType {
        match self {
            WeightDtype::F32 => DType::F32,
            WeightDtype::F16 => DType::F16,
            WeightDtype::Q8_0 => DType::Q8_0,
            WeightDtype::Q4_0 => DType::Q4_0,
            WeightDtype::Q4_1 => DType::Q4_1,
            WeightDtype::Q5_0 => DType::Q5_0,
            WeightDtype::Q5_1 => DType::Q5_1,
            WeightDtype::Q4K => DType::Q4K,
            WeightDtype::Q5K => DType::Q5K,
            WeightDtype::Q6K => DType::Q6K,
        }
    }

    /// The storage format that keeps a file type's values exactly: itself for f16 and the
    /// block formats, f32 for f32 and bf16.
    pub fn for_file(d: DType) -> WeightDtype {
        WeightDtype::ALL
            .into_iter()
            .find(|w| w.file_dtype() == d)
            .unwrap_or(WeightDtype::F32)
    }

    /// Whether this is a ggml block format.
    pub fn is_quantized(self) -> bool {
        self.file_dtype().is_quantized()
    }

    /// The name `--dtype` takes and `wgpt info` prints.
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Q8_0 => "q8_0",
            WeightDtype::Q4_0 => "q4_0",
            WeightDtype::Q4_1 => "q4_1",
            WeightDtype::Q5_0 => "q5_0",
            WeightDtype::Q5_1 => "q5_1",
            WeightDtype::Q4K => "q4_k",
            WeightDtype::Q5K => "q5_k",
            WeightDtype::Q6K => "q6_k",
        }
    }

    /// The weight-access WGSL of this format.
    pub(super) fn reader(self) -> String {
        match self {
            WeightDtype::F32 => WEIGHTS_F32.to_string(),
            WeightDtype::F16 => WEIGHTS_F16.to_string(),
            q => {
                let layout =
                    crate::format::quant::pack::Layout::of(q.file_dtype()).expect("block format");
                format!("{}{WEIGHTS_QUANT}", layout.wgsl_constants())
            }
        }
    }
}

/// How the KV cache stores keys and values (`--kv`). Attention's arithmetic is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KvDtype {
    /// 32-bit floats: exact, twice the memory.
    F32,
    /// 16-bit floats (IEEE half, rounded to nearest): half the memory and half the bytes decode
    /// attention reads. The default on every adapter, as in llama.cpp.
    #[default]
    F16,
}

impl KvDtype {
    /// Bytes of one stored key or value feature.
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }

    /// The name `--kv` takes and `wgpt info` prints.
    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
        }
    }

    /// Parses `f32` / `f16`.
    pub fn parse(name: &str) -> Option<Self> {
        [KvDtype::F32, KvDtype::F16]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The cache-access WGSL (`kv_load`, `kv_store`, `kv_round` and the `KV` binding).
    pub(super) fn source(self) -> &'static str {
        match self {
            KvDtype::F32 => KV_F32,
            KvDtype::F16 => KV_F16,
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
