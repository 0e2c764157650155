//! [`Model`]: config, tokenizer and weights on the GPU, plus the pipelines that run them.

pub(crate) mod forward;
pub(crate) mod weights;

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Kernels, WeightDtype};
use crate::loader::{DType, SafetensorsSource, Source};
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Storage dtype of the weight matrices on the GPU; `None` picks f16 for f16 files and f32
    /// otherwise (bf16 converts exactly to f32).
    pub dtype: Option<WeightDtype>,
    /// Cap on the bytes of one embedding / LM-head buffer (the adapter's binding limit is used
    /// when smaller). Mainly for tests of the split path.
    pub max_chunk_bytes: Option<u64>,
    /// Largest batch one forward submit processes; longer inputs are split. Default 512.
    pub max_batch: Option<usize>,
}

/// What `wgpt info` reports about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Where the model came from (directory, "embedded", "synthetic gpt2").
    pub origin: String,
    /// Parameters (tied head counted once).
    pub n_params: usize,
    /// Dtypes of the tensors in the file(s).
    pub file_dtypes: Vec<DType>,
    /// Storage dtype of the weight matrices on the GPU.
    pub dtype: WeightDtype,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    /// Buffers the token embedding is split into (more than one when it exceeds the binding limit).
    pub embedding_buffers: usize,
}

/// A GPT-2-family model on the GPU.
///
/// ```no_run
/// use wgpt::{Gpu, GpuOptions, LoadOptions, Model, SamplerConfig};
/// let gpu = Gpu::new(&GpuOptions::default())?;
/// let model = Model::load("path/to/gpt2", &gpu, &LoadOptions::default())?;
/// let mut session = model.session()?;
/// let mut out = session.generate("Hello", SamplerConfig::greedy(), 20)?;
/// for token in &mut out {
///     print!("{}", token?.text);
/// }
/// println!("\nstopped: {:?}", out.stop_reason());
/// # Ok::<(), wgpt::Error>(())
/// ```
pub struct Model {
    pub(crate) gpu: Gpu,
    pub(crate) config: Config,
    pub(crate) kernels: Kernels,
    pub(crate) weights: weights::Weights,
    pub(crate) tokenizer: Option<Tokenizer>,
    pub(crate) opts: LoadOptions,
    info: ModelInfo,
}

/// The model compiled into the binary (feature `default-model`): a small GPT-2 trained on
/// TinyShakespeare, see `tools/train_tinyshakespeare.py`.
#[cfg(feature = "default-model")]
mod embedded {
    pub const CONFIG: &str = include_str!("../../assets/model/config.json");
    pub const TOKENIZER: &[u8] = include_bytes!("../../assets/model/tokenizer.json");
    pub static WEIGHTS: &[u8] = include_bytes!("../../assets/model/model.safetensors");
}

impl Model {
    /// Loads a Hugging Face model directory: `config.json`, `model.safetensors` (or a sharded
    /// `model.safetensors.index.json`) and `tokenizer.json`.
    pub fn load(dir: impl AsRef<Path>, gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model directory"),
            ));
        }
        let config = Config::from_file(&dir.join("config.json"))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)?;
        let files = SafetensorsSource::open_dir(dir)?;
        Self::build(
            gpu,
            config,
            Source::Files(files),
            Some(tokenizer),
            opts,
            dir.display().to_string(),
        )
    }

    /// Loads the model compiled into the binary.
    #[cfg(feature = "default-model")]
    pub fn load_default(gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        let config = Config::from_json(embedded::CONFIG)?;
        let tokenizer = Tokenizer::from_bytes(embedded::TOKENIZER)?;
        let files =
            SafetensorsSource::from_static("embedded model.safetensors", embedded::WEIGHTS)?;
        Self::build(
            gpu,
            config,
            Source::Files(files),
            Some(tokenizer),
            opts,
            "embedded TinyShakespeare GPT-2".into(),
        )
    }

    /// A model with `config`'s shapes and seeded random weights (benchmarks, tests). It has no
    /// tokenizer: use [`Session::forward`] with token ids.
    pub fn synthetic(config: Config, seed: u64, gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        Self::build(
            gpu,
            config,
            Source::Synthetic { seed },
            None,
            opts,
            "synthetic".into(),
        )
    }

    fn build(
        gpu: &Gpu,
        config: Config,
        source: Source,
        tokenizer: Option<Tokenizer>,
        opts: &LoadOptions,
        origin: String,
    ) -> Result<Self> {
        weights::check_shapes(&config, &source)?;
        if let Some(tok) = &tokenizer {
            if tok.vocab_size() > config.vocab_size {
                return Err(Error::InvalidInput(format!(
                    "the tokenizer has {} tokens but the model's vocab_size is {}: some token ids cannot be embedded",
                    tok.vocab_size(),
                    config.vocab_size
                )));
            }
        }
        let file_dtypes = match &source {
            Source::Files(f) => {
                let mut d: Vec<DType> = Vec::new();
                for name in ["wte.weight", "h.0.attn.c_attn.weight"] {
                    let t = f.tensor(name)?;
                    if !d.contains(&t.dtype) {
                        d.push(t.dtype);
                    }
                }
                d
            }
            Source::Synthetic { .. } => vec![DType::F32],
        };
        let dtype = opts.dtype.unwrap_or(if file_dtypes == [DType::F16] {
            WeightDtype::F16
        } else {
            WeightDtype::F32
        });
        let limits = gpu.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_chunk = opts.max_chunk_bytes.map_or(binding, |m| m.min(binding));
        check_fits(&config, dtype, binding, opts)?;
        let kernels = Kernels::new(gpu);
        let weights = weights::upload(gpu, &config, &source, dtype, max_chunk)?;
        let info = ModelInfo {
            origin,
            n_params: config.n_params(),
            file_dtypes,
            dtype,
            weight_bytes: weights.bytes,
            embedding_buffers: weights.wte.chunks.len(),
        };
        log::info!(
            "loaded {} ({} params, {} on GPU, {} MB)",
            info.origin,
            info.n_params,
            dtype,
            info.weight_bytes / 1_000_000
        );
        Ok(Model {
            gpu: gpu.clone(),
            config,
            kernels,
            weights,
            tokenizer,
            opts: opts.clone(),
            info,
        })
    }

    /// A new session with an empty KV cache.
    pub fn session(&self) -> Result<Session<'_>> {
        Session::new(self)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tokenizer, if the model has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The GPU the model lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Parameters, dtypes and bytes on the GPU.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.opts
            .max_batch
            .unwrap_or(512)
            .clamp(1, self.config.n_positions)
    }

    /// Rows of logits one read-back holds (bounded by the binding limit and 64 MiB).
    pub(crate) fn logit_rows(&self) -> usize {
        let limits = self.gpu.limits();
        let cap = limits.max_storage_buffer_binding_size.min(64 << 20);
        let rows = cap / (self.config.vocab_size as u64 * 4);
        (rows as usize).clamp(1, self.max_batch())
    }
}

/// Fails early, before any allocation, when a weight or activation cannot fit the device.
fn check_fits(cfg: &Config, dtype: WeightDtype, binding: u64, opts: &LoadOptions) -> Result<()> {
    let c = cfg.n_embd as u64;
    let f = cfg.n_inner as u64;
    let es = dtype.size() as u64;
    let biggest_linear = [
        ("mlp.c_fc", f * c.next_multiple_of(4)),
        ("mlp.c_proj", c * f.next_multiple_of(4)),
        ("attn.c_attn", 3 * c * c.next_multiple_of(4)),
    ];
    for (name, elems) in biggest_linear {
        if elems * es > binding {
            return Err(Error::DeviceLimits(format!(
                "weight `{name}` needs {} bytes in {dtype}, above the adapter's storage binding limit of {binding} bytes",
                elems * es
            )));
        }
    }
    let b = opts.max_batch.unwrap_or(512).min(cfg.n_positions) as u64;
    let biggest_act = [
        ("KV cache of one layer", cfg.n_positions as u64 * c * 4),
        ("MLP activations", b * f * 4),
    ];
    for (name, bytes) in biggest_act {
        if bytes > binding {
            return Err(Error::DeviceLimits(format!(
                "{name} needs {bytes} bytes, above the adapter's storage binding limit of {binding} bytes"
            )));
        }
    }
    Ok(())
}
