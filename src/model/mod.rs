//! [`Model`]: config, tokenizer and weights on the GPU, plus the pipelines that run them.
//!
//! The seam between the families and everything else is `Arch`: each family's module
//! (`gpt2.rs`, `gpt1.rs`, `opt.rs`, `neox.rs`, `llama.rs`) implements it once, and `ARCHES` lists them.
//! Loading, fit checks, `Session`, generation, perplexity, the CLI and `bench` only call
//! through it.

mod family;
pub(crate) mod forward;
mod gguf;
mod gpt1;
mod gpt2;
mod llama;
mod neox;
mod opt;
pub(crate) mod source;
pub(crate) mod tensors;
pub(crate) mod upload;
pub(crate) mod weights;

use std::path::Path;

use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::safetensors::SafetensorsSource;
use crate::format::DType;
use crate::gpu::Gpu;
use crate::kernels::{texel_rows, KernelFamily, Kernels, KvDtype, ShaderOptions, WeightDtype};
use crate::tokenizer::Tokenizer;
use source::Source;
use tensors::Stored;
use upload::Uploader;

use family::{arch, tensor_list};
pub use gguf::inspect_gguf;
pub use source::inspect_safetensors;

/// Options for loading a model. Every field has a default; set the ones you need with the
/// `with_*` methods (or assign the public fields).
///
/// ```
/// use wgpt::{KernelFamily, LoadOptions, WeightDtype};
/// let opts = LoadOptions::default()
///     .with_dtype(WeightDtype::F16)
///     .with_kernels(KernelFamily::BarrierFree)
///     .with_max_batch(64);
/// assert_eq!(opts.max_batch, Some(64));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Storage dtype of the weight matrices on the GPU; `None` picks f16 for f16 files and f32
    /// otherwise (bf16 converts exactly to f32).
    pub dtype: Option<WeightDtype>,
    /// Cap on the bytes of one embedding / LM-head texture (the adapter's texture size limit is used
    /// when smaller). Mainly for tests of the split path.
    pub max_chunk_bytes: Option<u64>,
    /// Largest batch one forward submit processes; longer inputs are split. Default 512.
    pub max_batch: Option<usize>,
    /// Refuse, before allocating anything, a model whose weights plus one session's buffers
    /// need more bytes than this. Default: the host's memory for CPU and integrated adapters
    /// (they share it), otherwise [`DEFAULT_MAX_MEMORY_BYTES`].
    pub max_memory_bytes: Option<u64>,
    /// Kernel family; `None` picks by adapter type (cooperative for hardware GPUs,
    /// barrier-free for software adapters). See [`KernelFamily`].
    pub kernels: Option<KernelFamily>,
    /// Called with (bytes uploaded, bytes in all) while the weights go to the GPU (on the
    /// loading thread).
    pub progress: Option<crate::gpu::Progress>,
    /// The context in use (positions a session's KV cache holds): `None` is
    /// [`DEFAULT_CONTEXT`] capped by the model's context, `Some(0)` the model's whole context,
    /// `Some(n)` n positions (at most the model's). Memory grows with it, not with the model's
    /// maximum.
    pub ctx: Option<usize>,
    /// How the KV cache stores keys and values; `None` is [`KvDtype::default`] (f16).
    pub kv: Option<KvDtype>,
}

impl LoadOptions {
    /// Storage dtype of the weight matrices.
    pub fn with_dtype(mut self, dtype: WeightDtype) -> Self {
        self.dtype = Some(dtype);
        self
    }

    /// Cap on the bytes of one embedding / LM-head texture.
    pub fn with_max_chunk_bytes(mut self, bytes: u64) -> Self {
        self.max_chunk_bytes = Some(bytes);
        self
    }

    /// Largest batch of one forward submit.
    pub fn with_max_batch(mut self, tokens: usize) -> Self {
        self.max_batch = Some(tokens);
        self
    }

    /// Refuse models that need more than `bytes` of memory.
    pub fn with_max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = Some(bytes);
        self
    }

    /// The kernel family.
    pub fn with_kernels(mut self, family: KernelFamily) -> Self {
        self.kernels = Some(family);
        self
    }

    /// The context in use (see [`LoadOptions::ctx`]; 0 is the model's whole context).
    pub fn with_ctx(mut self, positions: usize) -> Self {
        self.ctx = Some(positions);
        self
    }

    /// The KV cache's storage format.
    pub fn with_kv(mut self, kv: KvDtype) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Report the weight upload's progress.
    pub fn with_progress(mut self, progress: crate::gpu::Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// The default cap on a model's GPU memory for discrete adapters (wgpu cannot query their
/// memory): 256 GiB, more than any single adapter has, so only absurd configs hit it.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 256 << 30;

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

/// A model on the GPU (any supported family, see [`Config::family`]).
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
            kv_cache_bytes: forward::kv_cache_bytes(&config, kv),
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

/// Reads a model directory's three parts (each parsed, nothing checked against the others).
/// A model directory opened (weights memory-mapped) and checked, not yet on a GPU: every
/// check that needs no device has passed. Lets a program report bad files before it opens an
/// adapter, without parsing anything twice.
pub struct ModelFiles {
    config: Config,
    config_json: String,
    tokenizer: Tokenizer,
    source: Source,
    origin: String,
    chat_template: Option<ChatTemplate>,
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

    /// The chat template the model will have (see [`Model::chat_template`]).
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
fn check_model(
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

fn max_batch(cfg: &Config, opts: &LoadOptions) -> usize {
    opts.max_batch.unwrap_or(512).clamp(1, cfg.n_ctx)
}

fn logit_rows(cfg: &Config, limits: &wgpu::Limits, max_batch: usize) -> usize {
    let cap = limits.max_storage_buffer_binding_size.min(64 << 20);
    let rows = cap / (cfg.vocab_size as u64 * 4);
    usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .clamp(1, max_batch)
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Total memory of this machine, which CPU and integrated adapters (Apple Silicon's unified
/// memory included) allocate from; on Linux, macOS and Windows alike (`sysinfo`). `None` where
/// it cannot be read: the fit check then uses [`DEFAULT_MAX_MEMORY_BYTES`] and says so.
fn host_memory_bytes() -> Option<u64> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    Some(sys.total_memory()).filter(|&b| b > 0)
}

/// The memory a model and its sessions may take: `LoadOptions::max_memory_bytes`, else the
/// host's memory for CPU and integrated adapters (they share it), else
/// [`DEFAULT_MAX_MEMORY_BYTES`]; with the words that name it in messages.
pub(crate) fn memory_bound(gpu: &Gpu, opts: &LoadOptions) -> (u64, String) {
    let shared = matches!(gpu.adapter().device_type.as_str(), "Cpu" | "IntegratedGpu");
    match opts.max_memory_bytes {
        Some(m) => (m, format!("LoadOptions::max_memory_bytes = {}", gib(m))),
        None => match shared.then(host_memory_bytes) {
            Some(Some(m)) => (
                m,
                format!(
                    "this machine's {} of memory, which the adapter uses",
                    gib(m)
                ),
            ),
            unknown => {
                let m = DEFAULT_MAX_MEMORY_BYTES;
                if unknown.is_some() {
                    log::warn!(
                        "cannot read this machine's memory: the fit check of this shared-memory adapter uses wgpt's limit of {}",
                        gib(m)
                    );
                }
                (m, format!("wgpt's limit of {} for one adapter", gib(m)))
            }
        },
    }
}

/// Refuses a storage format wgpt cannot make from float weights: the k-quants and the other
/// GGUF-only block formats are read from GGUF files as they are, never quantized to.
fn check_dtype(asked: Option<WeightDtype>) -> Result<()> {
    match asked {
        Some(d) if !WeightDtype::QUANTIZABLE.contains(&d) && !matches!(d, WeightDtype::F32 | WeightDtype::F16) => {
            Err(Error::InvalidInput(format!(
                "weights cannot be stored as {d}: wgpt reads {d} from GGUF files as they are but does not quantize to it; ask for f32, f16, q8_0 or q4_0, or leave the dtype unset to keep the file's formats"
            )))
        }
        _ => Ok(()),
    }
}

/// Fails early, before any allocation, when the model cannot fit the device: each weight
/// texture against the adapter's texture size limit, each buffer against its binding limit,
/// and the total against the memory bound. `cfg` must
/// have passed [`Config::validate`], which keeps this arithmetic far from overflow.
fn check_fits(
    gpu: &Gpu,
    cfg: &Config,
    dtype: WeightDtype,
    kv: KvDtype,
    opts: &LoadOptions,
) -> Result<()> {
    let (bound, what) = memory_bound(gpu, opts);
    let batch = max_batch(cfg, opts);
    let tensors = tensor_list(cfg);
    let weights = tensors.gpu_bytes(dtype);
    let session = forward::session_bytes(cfg, kv, batch, logit_rows(cfg, gpu.limits(), batch));
    if weights + session > bound {
        return Err(Error::DeviceLimits(format!(
            "the model needs {} ({} of weights in {dtype} + {} of KV cache ({} positions, {kv}) and activations for one session), more than {what}; a smaller --ctx needs less",
            gib(weights + session),
            gib(weights),
            gib(session),
            cfg.n_ctx,
        )));
    }
    let limits = gpu.limits();
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let max_dim = limits.max_texture_dimension_2d as u64;
    for t in &tensors.0 {
        let (k, rows) = match t.stored {
            Stored::Matrix { k, n } => (k, texel_rows(n, dtype)),
            // Split by vocabulary into textures of any height the device allows.
            Stored::Embedding { c, .. } => (c, 1),
            Stored::F32 { len } | Stored::Generated { len } if len as u64 * 4 > binding => {
                return Err(Error::DeviceLimits(format!(
                    "weight `{}` (f32) needs {} bytes ({}), above the adapter's storage buffer limit of {binding} bytes ({})",
                    t.name,
                    len * 4,
                    gib(len as u64 * 4),
                    gib(binding)
                )));
            }
            Stored::F32 { .. } | Stored::Generated { .. } | Stored::Within => continue,
        };
        let (k, rows) = (k as u64, rows as u64);
        if k > max_dim || rows > max_dim {
            return Err(Error::DeviceLimits(format!(
                "weight `{}` ({dtype}) needs a {k}×{rows} texture, above the adapter's max_texture_dimension_2d of {max_dim}",
                t.name
            )));
        }
    }
    let [c, f, v, p, b] =
        [cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_ctx, batch].map(|x| x as u64);
    // The widths the session allocates (forward.rs): keys and values of the key/value heads,
    // q | k | v rows, the gated MLP's [gate | up] rows.
    let h = cfg.heads();
    let qkv = h.qkv_c() as u64;
    let gate_up = forward::gate_up_width(cfg) as u64;
    let f32s = |name: &str, elems: u64| (name.to_string(), elems * 4);
    let buffers = [
        (
            format!("the KV cache of one layer ({p} positions, {kv}; --ctx sets the positions)"),
            forward::kv_layer_bytes(cfg, kv),
        ),
        f32s("the MLP activations", b * f.max(gate_up)),
        f32s("the attention activations", b * qkv),
        f32s("the zero bias", v.max(f).max(c)),
    ];
    for (name, bytes) in buffers {
        if bytes > binding {
            return Err(Error::DeviceLimits(format!(
                "{name} needs {bytes} bytes ({}), above the adapter's storage buffer limit of {binding} bytes ({})",
                gib(bytes),
                gib(binding)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn host_memory_is_the_machines() {
        let info = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = info.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(super::host_memory_bytes(), Some(kib * 1024));
    }
}
