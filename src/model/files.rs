//! [`ModelFiles`]: a model directory or GGUF file opened and checked without a GPU.

use std::path::Path;

use super::family::arch;
use super::gguf;
use super::source::{self, Source};
use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::safetensors::SafetensorsSource;
use crate::format::DType;
use crate::tokenizer::Tokenizer;

/// A model directory opened (weights memory-mapped) and checked, not yet on a GPU: every
/// check that needs no device has passed. Lets a program report bad files before it opens an
/// adapter, without parsing anything twice.
pub struct ModelFiles {
    pub(crate) config: Config,
    pub(crate) config_json: String,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) source: Source,
    pub(crate) origin: String,
    pub(crate) chat_template: Option<ChatTemplate>,
}

impl ModelFiles {
    /// Opens `config.json`, `tokenizer.json` and the weights of `dir` and checks them; or,
    /// when `dir` is a `.gguf` file, that file (see [`ModelFiles::open_gguf`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) if crate::format::gguf::is_gguf(dir) => return Self::open_gguf(dir),
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "{} is a file, not a model directory (one holding config.json, model.safetensors and tokenizer.json)",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidInput(format!(
                    "model directory {} does not exist",
                    dir.display()
                )))
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        let config_path = dir.join("config.json");
        let config_json =
            std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config = Config::from_json(&config_json).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                path: config_path.clone(),
                message,
            },
            other => other,
        })?;
        let mut config = config;
        config.add_generation_config(&dir.join("generation_config.json"))?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let source = Source::Files(SafetensorsSource::open_dir(dir, arch(&config))?);
        check_model(&config, &source, Some(&tokenizer))?;
        Ok(ModelFiles {
            config,
            config_json,
            tokenizer,
            source,
            origin: dir.display().to_string(),
            chat_template: ChatTemplate::from_dir(dir)?,
        })
    }

    /// Opens a GGUF file (llama.cpp's format, v2 or v3: architectures `gpt2`, `llama`,
    /// `qwen2`, `gptneox`): the config from its metadata, the tokenizer from its metadata
    /// unless a `tokenizer.json` lies beside it, the chat template likewise, and its tensors
    /// memory-mapped and checked.
    pub fn open_gguf(path: &Path) -> Result<Self> {
        let g = gguf::open(path)?;
        let source = Source::Gguf(Box::new(g.source));
        check_model(&g.config, &source, Some(&g.tokenizer))?;
        Ok(ModelFiles {
            config: g.config,
            config_json: g.config_json,
            tokenizer: g.tokenizer,
            source,
            origin: path.display().to_string(),
            chat_template: g.chat_template,
        })
    }

    /// The model's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The chat template the model will have (see [`Model::chat_template`](crate::Model::chat_template)).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Whether the files are a GGUF file (rather than a model directory).
    pub fn is_gguf(&self) -> bool {
        matches!(self.source, Source::Gguf(_))
    }
}

/// The checks that need no GPU: config, tensors, tokenizer vs vocabulary. Returns the dtypes
/// of the stored tensors.
pub(crate) fn check_model(
    config: &Config,
    source: &Source,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<DType>> {
    config.validate()?;
    let file_dtypes = match source {
        Source::Files(f) => source::check_safetensors(f, config)?,
        Source::Gguf(g) => g.check(config)?,
        Source::Synthetic { .. } => vec![DType::F32],
    };
    if let Some(tok) = tokenizer {
        if tok.vocab_size() > config.vocab_size {
            return Err(Error::InvalidInput(format!(
                "the tokenizer has {} tokens but the model's vocab_size is {}: some token ids cannot be embedded",
                tok.vocab_size(),
                config.vocab_size
            )));
        }
    }
    Ok(file_dtypes)
}
