//! The GGUF container (llama.cpp's format, versions 2 and 3: [`reader`]) and the tokenizer
//! vocabularies its metadata carries ([`vocab`]). No model knowledge: the architectures live in
//! `crate::model::gguf`.

pub(crate) mod reader;
pub(crate) mod vocab;

use std::path::Path;

use super::DType;
use crate::error::{Error, Result};
use reader::TensorInfo;

/// Whether `path` names a GGUF file: a `.gguf` extension, or a file that starts with the
/// `GGUF` magic.
pub(crate) fn is_gguf(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str());
    if ext.is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == b"GGUF")
}

/// A tensor's stored bytes (its range was checked against the file by the reader).
pub(crate) fn bytes_of<'b>(
    bytes: &'b [u8],
    path: &Path,
    name: &str,
    info: &TensorInfo,
) -> Result<&'b [u8]> {
    bytes.get(info.range.clone()).ok_or_else(|| Error::Weights {
        path: path.to_path_buf(),
        message: format!("tensor `{name}` lies outside the file"),
    })
}

/// The dtype of a tensor wgpt reads, or the error naming the ggml type it does not.
pub(crate) fn dtype_of(path: &Path, name: &str, info: &TensorInfo) -> Result<DType> {
    info.ggml_type.dtype().ok_or_else(|| Error::Weights {
        path: path.to_path_buf(),
        message: format!(
            "unsupported tensor type {} in tensor `{name}`; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K",
            info.ggml_type.name()
        ),
    })
}
