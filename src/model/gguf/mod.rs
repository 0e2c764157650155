//! GGUF files (llama.cpp's format, versions 2 and 3) as a model: the architectures and their
//! tensor names and layouts ([`arch`]) over the container and vocabulary of
//! `crate::format::gguf`.
//!
//! A `.gguf` file opens into the same parts a Hugging Face directory does: a [`Config`] built
//! by the family's own `config.json` reader from the metadata, a tokenizer, a chat template
//! and a tensor source under the family's canonical tensor names. Tensors keep their ggml
//! type (F32, F16, BF16 and the block formats of [`DType`]); rows the converter reordered are
//! put back in the checkpoint's order, whole rows at a time, so quantized rows move intact.
//! A `tokenizer.json` (and a chat template file) beside the `.gguf` file take precedence over
//! the metadata's.

pub(crate) mod arch;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::family::gguf_family;
use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::gguf::reader::{self, Gguf};
use crate::format::gguf::{bytes_of, dtype_of, vocab};
use crate::format::{DType, Tensor};
use crate::model::family::tensor_list;
use crate::model::tensors::Stored;
use crate::tokenizer::Tokenizer;
pub(crate) use arch::{llama_layout, rows_of, Mapped, Meta, RowOrder};

/// canonical name → (name in the file, how it maps).
type Index = HashMap<String, (String, Mapped)>;

/// The metadata read and checked: architecture, config and tensor index.
struct Parsed {
    gguf: Gguf,
    config: Config,
    config_json: String,
    index: Index,
}

/// Rewrites a config error to name the GGUF file.
fn at_path(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config { message, .. } => Error::Config {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let gguf = reader::parse(path, bytes)?;
    log::debug!("{}: GGUF version {}", path.display(), gguf.version);
    let arch = match gguf.get("general.architecture") {
        Some(v) => v.as_str().ok_or_else(|| Error::Weights {
            path: path.to_path_buf(),
            message: "metadata `general.architecture` is not a string".into(),
        })?,
        None => {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: "metadata `general.architecture` is missing".into(),
            })
        }
    };
    let family = gguf_family(arch)?;
    let eos = vocab::stop_ids(&gguf);
    let json = arch::config_json(family, &gguf, bytes, arch, &eos).map_err(at_path(path))?;
    let config_json = serde_json::to_string_pretty(&json).unwrap_or_default();
    let mut config = Config::from_json(&config_json).map_err(at_path(path))?;
    let rope_freqs = match gguf.tensors.get("rope_freqs.weight") {
        None => None,
        Some(info) => {
            let dtype = dtype_of(path, "rope_freqs.weight", info)?;
            let t = Tensor {
                dtype,
                shape: info.shape(),
                data: Cow::Borrowed(bytes_of(bytes, path, "rope_freqs.weight", info)?),
                transposed: false,
            };
            Some(t.to_f32())
        }
    };
    arch::finish_config(&gguf, arch, &mut config, rope_freqs).map_err(at_path(path))?;
    config.validate().map_err(at_path(path))?;
    let mut index = Index::new();
    for name in &gguf.order {
        let Some(m) = arch::map_name(family, arch, &config, name) else {
            let setting = family.gguf_setting_tensors().contains(&name.as_str());
            if name != "rope_freqs.weight" && !setting {
                log::warn!("ignoring GGUF tensor `{name}`");
            }
            continue;
        };
        let canonical = m.name.clone();
        if let Some((other, _)) = index.insert(canonical.clone(), (name.clone(), m)) {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "tensor `{canonical}` is stored twice (as `{other}` and `{name}`)"
                ),
            });
        }
    }
    Ok(Parsed {
        gguf,
        config,
        config_json,
        index,
    })
}

/// Checks every tensor `cfg` needs: present, a supported type, the listed shape (transposed
/// where the file stores the transpose), rows that split into the heads a reordering needs.
/// Returns the dtypes of those tensors.
fn check(path: &Path, p: &Parsed, cfg: &Config) -> Result<Vec<DType>> {
    let mut dtypes = Vec::new();
    let list = tensor_list(cfg);
    for t in &list.0 {
        if matches!(t.stored, Stored::Generated { .. }) {
            continue;
        }
        let Some((gname, m)) = p.index.get(&t.name) else {
            return Err(Error::MissingTensor {
                name: t.name.clone(),
            });
        };
        let info = &p.gguf.tensors[gname];
        let dtype = dtype_of(path, gname, info)?;
        let stored = info.shape();
        let listed: Vec<usize> = match m.transposed {
            true => stored.iter().rev().copied().collect(),
            false => stored.clone(),
        };
        if listed != t.shape {
            return Err(Error::Shape {
                name: format!("{} (GGUF `{gname}`)", t.name),
                expected: t.shape.clone(),
                actual: listed,
            });
        }
        if m.rows != RowOrder::AsStored {
            let rows = stored.first().copied().unwrap_or(0);
            if !m.rows.fits(rows) || (stored.len() == 1 && dtype.is_quantized()) {
                return Err(Error::Weights {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor `{gname}` ({dtype}, shape {stored:?}) cannot be put back in the checkpoint's row order"
                    ),
                });
            }
        }
        if !dtypes.contains(&dtype) {
            dtypes.push(dtype);
        }
    }
    let known: std::collections::HashSet<&str> = list.0.iter().map(|t| t.name.as_str()).collect();
    for (c, (gname, _)) in &p.index {
        if !known.contains(c.as_str()) {
            log::warn!("ignoring GGUF tensor `{gname}` ({c})");
        }
    }
    Ok(dtypes)
}

/// Tensors of a memory-mapped GGUF file, by canonical name.
pub(crate) struct GgufSource {
    path: PathBuf,
    map: memmap2::Mmap,
    parsed: Parsed,
}

impl GgufSource {
    /// Checks every tensor `cfg` needs; returns their dtypes.
    pub fn check(&self, cfg: &Config) -> Result<Vec<DType>> {
        check(&self.path, &self.parsed, cfg)
    }

    /// A tensor by canonical name: its stored shape and ggml data, rows in the checkpoint's
    /// order, `transposed` where the file stores the transpose of the listed matrix.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>> {
        let (gname, m) = self
            .parsed
            .index
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into() })?;
        let info = &self.parsed.gguf.tensors[gname];
        let dtype = dtype_of(&self.path, gname, info)?;
        let bytes = bytes_of(&self.map, &self.path, gname, info)?;
        let shape = info.shape();
        let data = match m.rows {
            RowOrder::AsStored => Cow::Borrowed(bytes),
            order => {
                let rows = shape.first().copied().unwrap_or(0);
                if rows == 0 || !order.fits(rows) || bytes.len() % rows != 0 {
                    return Err(Error::Weights {
                        path: self.path.clone(),
                        message: format!(
                            "tensor `{gname}` cannot be put back in the checkpoint's row order"
                        ),
                    });
                }
                let row = bytes.len() / rows;
                let mut out = Vec::with_capacity(bytes.len());
                for r in 0..rows {
                    let s = order.source(r, rows) * row;
                    out.extend_from_slice(&bytes[s..s + row]);
                }
                Cow::Owned(out)
            }
        };
        Ok(Tensor {
            dtype,
            shape,
            data,
            transposed: m.transposed,
        })
    }
}

/// A GGUF file opened: everything a model directory gives.
pub(crate) struct Opened {
    pub config: Config,
    pub config_json: String,
    pub tokenizer: Tokenizer,
    pub source: GgufSource,
    pub chat_template: Option<ChatTemplate>,
}

/// The metadata's chat template, with its bos and eos tokens.
fn metadata_template(g: &Gguf) -> Result<Option<ChatTemplate>> {
    let Some(t) = g.get("tokenizer.chat_template").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    let text = |key: &str| vocab::token_id(g, key).and_then(|id| vocab::token_text(g, id));
    let bos = text("tokenizer.ggml.bos_token_id");
    let eos = text("tokenizer.ggml.eos_token_id");
    ChatTemplate::new(t, bos.as_deref(), eos.as_deref()).map(Some)
}

/// Opens a `.gguf` file: memory-maps it, parses and checks its header, builds the config,
/// the tokenizer (`tokenizer.json` beside the file first) and the chat template (a template
/// file beside it first). The tensors are checked by [`GgufSource::check`].
pub(crate) fn open(path: &Path) -> Result<Opened> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; wgpt does not modify the file, and a model file changed
    // underneath a running process is outside what any loader can defend against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let parsed = parse(path, &map)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let beside = dir.join("tokenizer.json");
    let tokenizer = if beside.is_file() {
        log::info!(
            "using {} rather than the GGUF file's tokenizer",
            beside.display()
        );
        Tokenizer::from_dir(dir)?
    } else {
        Tokenizer::from_gguf_metadata(&parsed.gguf, path)?
    };
    let chat_template = match ChatTemplate::from_dir(dir)? {
        Some(t) => Some(t),
        None => metadata_template(&parsed.gguf)?,
    };
    Ok(Opened {
        config: parsed.config.clone(),
        config_json: parsed.config_json.clone(),
        tokenizer,
        chat_template,
        source: GgufSource {
            path: path.to_path_buf(),
            map,
            parsed,
        },
    })
}

/// Parses the bytes of a GGUF file and runs every check [`crate::Model::load`] runs on one
/// without a GPU: header and tensor bounds, architecture and config, every tensor the model
/// needs (presence, type, shape), the tokenizer and chat template in the metadata, and the
/// tokenizer against the vocabulary. Returns the config. For tools and fuzzing.
///
/// ```
/// let err = wgpt::inspect_gguf(b"GGUF\x03\x00\x00\x00").unwrap_err();
/// assert!(err.to_string().contains("truncated"), "{err}");
/// ```
pub fn inspect_gguf(bytes: &[u8]) -> Result<Config> {
    let path = Path::new("model.gguf");
    let parsed = parse(path, bytes)?;
    check(path, &parsed, &parsed.config)?;
    let tok = Tokenizer::from_gguf_metadata(&parsed.gguf, path)?;
    if tok.vocab_size() > parsed.config.vocab_size {
        return Err(Error::InvalidInput(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tok.vocab_size(),
            parsed.config.vocab_size
        )));
    }
    metadata_template(&parsed.gguf)?;
    Ok(parsed.config)
}
