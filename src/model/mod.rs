//! [`Model`]: config, tokenizer and weights on the GPU, plus the pipelines that run them.
//!
//! The seam between the families and everything else is `Arch`: each family's module
//! (`gpt2.rs`, `gpt1.rs`, `opt.rs`, `neox.rs`, `llama.rs`) implements it once, and `ARCHES` lists them.
//! Loading, fit checks, `Session`, generation, perplexity, the CLI and `bench` only call
//! through it.
//!
//! Layer: owns the families, their tensors, weights, the forward graph and loading; may
//! import `config`, `tokenizer`, `chat` (templates), `kernels`, `gpu`, `format`, `error`,
//! `util`; never a session, the engine or the CLI.

pub(crate) mod activations;
pub(crate) mod family;
mod files;
mod fit;
pub(crate) mod forward;
mod gemma;
mod gguf;
mod gpt1;
mod gpt2;
mod llama;
mod neox;
mod opt;
mod options;
mod phi3;
mod rotary;
pub(crate) mod source;
pub(crate) mod tensors;
pub(crate) mod upload;
pub(crate) mod weights;

use std::path::Path;

use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::error::Result;
#[cfg(feature = "default-model")]
use crate::format::safetensors::SafetensorsSource;
use crate::format::DType;
use crate::gpu::Gpu;
use crate::kernels::{KernelFamily, Kernels, KvDtype, ShaderOptions, WeightDtype};
use crate::tokenizer::Tokenizer;
use source::Source;
use upload::Uploader;

pub use family::presets;
use family::{arch, tensor_list};
use files::check_model;
pub use files::ModelFiles;
pub(crate) use fit::memory_bound;
use fit::{check_dtype, check_fits, logit_rows, max_batch};
pub use gguf::inspect_gguf;
pub use options::{LoadOptions, DEFAULT_MAX_MEMORY_BYTES};
pub use source::inspect_safetensors;

/// What `wgpt info` reports about a loaded model.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelInfo {
    /// Where the model came from (directory, "embedded", "synthetic gpt2").
    pub origin: String,
    /// Parameters (tied head counted once).
    pub n_params: u64,
    /// Dtypes of the tensors in the file(s).
    pub file_dtypes: Vec<DType>,
    /// Storage format of the weight matrices read as values (f32 / f16 / bf16 in the file):
    /// the one `LoadOptions::dtype` asked for, or the file's. Matrices a file stores in a block
    /// format keep it unless a float format was asked for ([`ModelInfo::gpu_dtypes`]).
    pub dtype: WeightDtype,
    /// Every storage format the weight matrices on the GPU use.
    pub gpu_dtypes: Vec<WeightDtype>,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    /// Textures the token embedding is split into: one, or more where the adapter's texture
    /// size limit or `LoadOptions::max_chunk_bytes` asks.
    pub embedding_buffers: usize,
    /// Kernel family in use (see `LoadOptions`).
    pub kernels: KernelFamily,
    /// Bytes of one session's KV cache over the context in use: keys and values of the
    /// key/value heads only (with grouped-query attention, `n_kv_head / n_head` of a full
    /// cache).
    pub kv_cache_bytes: u64,
    /// How the KV cache stores keys and values.
    pub kv: KvDtype,
    /// The context in use ([`Config::n_ctx`]); the model's own is [`Config::n_positions`].
    pub n_ctx: usize,
}

impl ModelInfo {
    /// The storage formats of the weight matrices as one name: `f16`, or `q4_k+q6_k` for a
    /// GGUF file that mixes formats.
    pub fn storage(&self) -> String {
        let names: Vec<&str> = self.gpu_dtypes.iter().map(|d| d.name()).collect();
        names.join("+")
    }
}

/// A model on the GPU (any supported family, see [`Config::model_type`]).
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
    /// The text of the `config.json` the model came from.
    config_json: Option<String>,
    /// The chat template of the model directory, if it has one.
    chat_template: Option<ChatTemplate>,
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
    /// Loads a Hugging Face model directory (`config.json`, `model.safetensors` or a sharded
    /// `model.safetensors.index.json`, `tokenizer.json`) or a GGUF file (`path/to/model.gguf`,
    /// see [`ModelFiles::open_gguf`]).
    pub fn load(dir: impl AsRef<Path>, gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        Self::from_files(ModelFiles::open(dir)?, gpu, opts)
    }

    /// Puts an opened and checked model directory on the GPU.
    pub fn from_files(files: ModelFiles, gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        let ModelFiles {
            config,
            config_json,
            tokenizer,
            source,
            origin,
            chat_template,
        } = files;
        let mut model = Self::build(gpu, config, source, Some(tokenizer), opts, origin)?;
        model.config_json = Some(config_json);
        model.chat_template = chat_template;
        Ok(model)
    }

    /// Checks a model directory as [`Model::load`] does, without a GPU: the files parse, the
    /// config is supported, every tensor is present with the config's shape and a supported
    /// dtype, and the tokenizer's ids fit the vocabulary. Returns the config.
    pub fn check_dir(dir: impl AsRef<Path>) -> Result<Config> {
        Ok(ModelFiles::open(dir)?.config)
    }

    /// Loads the model compiled into the binary.
    #[cfg(feature = "default-model")]
    pub fn load_default(gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        let config = Config::from_json(embedded::CONFIG)?;
        let tokenizer = Tokenizer::from_bytes(embedded::TOKENIZER)?;
        let files = SafetensorsSource::from_static(
            "embedded model.safetensors",
            embedded::WEIGHTS,
            arch(&config),
        )?;
        let mut model = Self::build(
            gpu,
            config,
            Source::Files(files),
            Some(tokenizer),
            opts,
            "embedded TinyShakespeare GPT-2".into(),
        )?;
        model.config_json = Some(embedded::CONFIG.to_string());
        Ok(model)
    }

    /// A model with `config`'s shapes and seeded random weights (benchmarks, tests). It has no
    /// tokenizer: use [`Session::forward`](crate::Session::forward) with token ids.
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
        gpu.scoped(|| Self::build_scoped(gpu, config, source, tokenizer, opts, origin))
    }

    fn build_scoped(
        gpu: &Gpu,
        mut config: Config,
        source: Source,
        tokenizer: Option<Tokenizer>,
        opts: &LoadOptions,
        origin: String,
    ) -> Result<Self> {
        config.set_context(opts.ctx)?;
        let file_dtypes = check_model(&config, &source, tokenizer.as_ref())?;
        let kv = opts.kv.unwrap_or_default();
        let dtype = opts.dtype.unwrap_or_else(|| default_dtype(&file_dtypes));
        let max_chunk = opts.max_chunk_bytes.unwrap_or(u64::MAX);
        check_dtype(opts.dtype)?;
        check_fits(gpu, &config, dtype, kv, opts)?;
        let mut shader_opts = ShaderOptions::best(gpu);
        if let Some(family) = opts.kernels {
            shader_opts.family = family;
        }
        let kernels = Kernels::with_options(gpu, shader_opts, kv);
        let total = tensor_list(&config).gpu_bytes(dtype);
        let weights = crate::gpu::with_upload_progress(opts.progress.as_ref(), total, || {
            let mut up = Uploader::new(gpu, &source, opts.dtype, max_chunk);
            // An explicit float format dequantizes block-format tensors; otherwise they stay as
            // the file stores them.
            up.dequantize_blocks = matches!(opts.dtype, Some(WeightDtype::F32 | WeightDtype::F16));
            let mut weights = arch(&config).upload(&mut up, &config)?;
            weights.bytes = up.finish()?;
            Ok(weights)
        })?;
        let info = ModelInfo {
            origin,
            n_params: config.n_params(),
            file_dtypes,
            dtype,
            gpu_dtypes: weights.storage_formats(),
            weight_bytes: weights.bytes,
            embedding_buffers: weights.wte.chunks.len(),
            kernels: shader_opts.family,
            kv_cache_bytes: activations::kv_cache_bytes(&config, kv, max_batch(&config, opts)),
            kv,
            n_ctx: config.n_ctx,
        };
        log::info!(
            "loaded {} ({} params, {} on GPU, {} MB; context {} of {}, KV cache {} {} MB)",
            info.origin,
            info.n_params,
            dtype,
            info.weight_bytes / 1_000_000,
            config.n_ctx,
            config.n_positions,
            kv,
            info.kv_cache_bytes / 1_000_000
        );
        Ok(Model {
            gpu: gpu.clone(),
            config,
            kernels,
            weights,
            tokenizer,
            opts: opts.clone(),
            info,
            config_json: None,
            chat_template: None,
        })
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

    /// The text of the `config.json` the model was loaded from, keys and values as the file
    /// names them (`None` for a [`Model::synthetic`] model).
    pub fn config_json(&self) -> Option<&str> {
        self.config_json.as_deref()
    }

    /// The model's chat template (`tokenizer_config.json`'s `chat_template` or
    /// `chat_template.jinja`), if its directory has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    pub(crate) fn max_batch(&self) -> usize {
        max_batch(&self.config, &self.opts)
    }

    /// Rows of logits one read-back holds (bounded by the binding limit and 64 MiB).
    pub(crate) fn logit_rows(&self) -> usize {
        logit_rows(&self.config, self.gpu.limits(), self.max_batch())
    }
}

/// The storage format that stands for the whole model in the fit check and in
/// `ModelInfo::dtype` when `LoadOptions::dtype` is unset: the file's first block format if it
/// has one, else f16 if it has f16 tensors (which stay f16; f32 and bf16 ones become f32), else
/// f32. Each matrix is stored in its own tensor's format (see `Uploader::storage`).
fn default_dtype(file_dtypes: &[DType]) -> WeightDtype {
    if let Some(q) = file_dtypes.iter().find(|d| d.is_quantized()) {
        return WeightDtype::for_file(*q);
    }
    match file_dtypes.contains(&DType::F16) {
        true => WeightDtype::F16,
        false => WeightDtype::F32,
    }
}
