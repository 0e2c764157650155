//! The library's one error type. Every fallible public function returns [`Result`].
//!
//! An error's `Display` is one line in wgpt's words; where a lower-level error caused it (an
//! I/O error, a wgpu error, a tokenizer error), that error is its
//! [`source`](std::error::Error::source), not pasted into the text. Print the whole chain
//! (`{:#}` with `anyhow`, or by walking `source()`) to see both; the `wgpt` binary joins them
//! with `": "` on one line.

use std::path::PathBuf;

/// An error from a lower layer (wgpu, tokenizers), kept as the [`std::error::Error::source`]
/// of a wgpt [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in wgpt, each with a message a user can act on.
///
/// `Debug` prints what `Display` does, followed by the sources, so that `fn main() ->
/// Result<(), wgpt::Error>` reports `Error: cannot read …: No such file or directory` rather
/// than the enum's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a field.
    #[error("invalid config {}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The config asks for something wgpt does not support.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A weights file is malformed (truncated, corrupt header, missing shard, ...).
    #[error("invalid weights {}: {message}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor is missing.
    #[error("tensor `{name}` is missing from the weights")]
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?} from config.json{}",
        if actual.iter().rev().eq(expected.iter()) { " (stored transposed?)" } else { "" })]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor has a dtype wgpt cannot use.
    #[error("tensor `{name}` has dtype {dtype}; supported: F32, F16, BF16")]
    DType {
        /// The tensor's name.
        name: String,
        /// Its dtype as the file names it.
        dtype: String,
    },
    /// The tokenizer could not be loaded or used.
    #[error("tokenizer: {message}")]
    Tokenizer {
        /// What wgpt was doing.
        message: String,
        /// The `tokenizers` crate's error, when it raised one.
        #[source]
        source: Option<BoxError>,
    },
    /// No usable adapter.
    #[error("{0}")]
    NoAdapter(String),
    /// The model does not fit the device.
    #[error("device limits exceeded: {0}")]
    DeviceLimits(String),
    /// The device ran out of memory while wgpt allocated or ran something.
    #[error("device limits exceeded: out of GPU memory {message}")]
    OutOfMemory {
        /// What wgpt was allocating.
        message: String,
        /// wgpu's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The GPU reported an error (validation, lost device, failed read-back).
    #[error("GPU error: {message}")]
    Gpu {
        /// What failed.
        message: String,
        /// wgpu's error, when it raised one.
        #[source]
        source: Option<BoxError>,
    },
    /// A caller passed an invalid argument (empty prompt, too many tokens, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits at position {position}: the weights likely contain NaN/Inf or overflow in this dtype")]
    NonFinite {
        /// The position (in the session's cache) whose logits were not finite.
        position: usize,
    },
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

    /// A GPU error with wgpu's error as its source.
    pub(crate) fn gpu(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Gpu {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A GPU error without a lower-level error behind it.
    pub(crate) fn gpu_msg(message: impl Into<String>) -> Self {
        Error::Gpu {
            message: message.into(),
            source: None,
        }
    }

    /// A tokenizer error with the `tokenizers` crate's error as its source.
    pub(crate) fn tokenizer(message: impl Into<String>, source: BoxError) -> Self {
        Error::Tokenizer {
            message: message.into(),
            source: Some(source),
        }
    }

    /// True for errors that come from the device rather than from the input.
    pub fn is_device_error(&self) -> bool {
        matches!(
            self,
            Error::NoAdapter(_)
                | Error::DeviceLimits(_)
                | Error::OutOfMemory { .. }
                | Error::Gpu { .. }
        )
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn sources_are_kept_not_flattened() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("/x/config.json", io);
        assert_eq!(e.to_string(), "cannot read /x/config.json");
        assert_eq!(e.source().unwrap().to_string(), "gone");

        let e = Error::tokenizer("cannot encode the text", "bad byte".into());
        assert_eq!(e.to_string(), "tokenizer: cannot encode the text");
        assert_eq!(e.source().unwrap().to_string(), "bad byte");

        let e = Error::gpu("read-back failed", "device lost".to_string());
        assert_eq!(e.to_string(), "GPU error: read-back failed");
        assert_eq!(e.source().unwrap().to_string(), "device lost");
        assert!(e.is_device_error());
        assert!(Error::gpu_msg("x").source().is_none());
    }

    #[test]
    fn debug_reads_as_the_message_and_its_sources() {
        // What `fn main() -> Result<(), wgpt::Error>` prints after `Error: `.
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("/x/config.json", io);
        assert_eq!(format!("{e:?}"), "cannot read /x/config.json: gone");
        let e = Error::InvalidInput("the prompt is empty".into());
        assert_eq!(format!("{e:?}"), "the prompt is empty");
    }
}
