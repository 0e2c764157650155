//! The library's one error type. Every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong in wgpt, each with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a field.
    #[error("invalid config {path}: {message}")]
    Config { path: PathBuf, message: String },
    /// The config asks for something wgpt does not support.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A weights file is malformed (truncated, corrupt header, missing shard, ...).
    #[error("invalid weights {path}: {message}")]
    Weights { path: PathBuf, message: String },
    /// A tensor is missing.
    #[error("tensor `{name}` is missing from the weights")]
    MissingTensor { name: String },
    /// A tensor's shape disagrees with the config.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?} from config.json{}",
        if actual.iter().rev().eq(expected.iter()) { " (stored transposed?)" } else { "" })]
    Shape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor has a dtype wgpt cannot use.
    #[error("tensor `{name}` has dtype {dtype}; supported: F32, F16, BF16")]
    DType { name: String, dtype: String },
    /// The tokenizer could not be loaded or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// No usable adapter.
    #[error("{0}")]
    NoAdapter(String),
    /// The model does not fit the device.
    #[error("device limits exceeded: {0}")]
    DeviceLimits(String),
    /// The GPU reported an error (validation, out of memory, lost device).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A caller passed an invalid argument (empty prompt, too many tokens, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits at position {position}: the weights likely contain NaN/Inf or overflow in this dtype")]
    NonFinite { position: usize },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for errors that come from the device rather than from the input.
    pub fn is_device_error(&self) -> bool {
        matches!(
            self,
            Error::NoAdapter(_) | Error::DeviceLimits(_) | Error::Gpu(_)
        )
    }
}
