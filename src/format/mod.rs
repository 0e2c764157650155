//! The formats weights come in, with no model knowledge: element types ([`DType`]), ggml's
//! block formats (`quant`), the safetensors container (`safetensors`) and the GGUF container
//! with its vocabularies (`gguf`).
//!
//! May import: `error`, `util`.

pub(crate) mod dtype;
pub(crate) mod gguf;
pub(crate) mod quant;
pub(crate) mod safetensors;

pub use dtype::DType;
pub(crate) use dtype::Tensor;
