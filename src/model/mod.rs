//! [`Model`]: config, tokenizer and weights on the GPU, plus the pipelines that run them.

pub(crate) mod forward;
pub(crate) mod weights;

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{texel_rows, Kernels, ShaderOptions, WeightDtype};
use crate::loader::{DType, SafetensorsSource, Source};
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
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
    /// Kernel family: `Some(true)` the cooperative kernels (workgroup tiles and reductions, for
    /// hardware GPUs), `Some(false)` the barrier-free ones (for software adapters); `None`
    /// picks by adapter type. See [`crate::kernels::ShaderOptions`].
    pub cooperative_kernels: Option<bool>,
}

/// The default cap on a model's GPU memory for discrete adapters (wgpu cannot query their
/// memory): 256 GiB, more than any single adapter has, so only absurd configs hit it.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 256 << 30;

/// What `wgpt info` reports about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Where the model came from (directory, "embedded", "synthetic gpt2").
    pub origin: String,
    /// Parameters (tied head counted once).
    pub n_params: u64,
    /// Dtypes of the tensors in the file(s).
    pub file_dtypes: Vec<DType>,
    /// Storage dtype of the weight matrices on the GPU.
    pub dtype: WeightDtype,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    /// Textures the token embedding is split into: one, or more where the adapter's texture
    /// size limit or `LoadOptions::max_chunk_bytes` asks.
    pub embedding_buffers: usize,
    /// Kernel family in use: "cooperative" or "barrier-free" (see `LoadOptions`).
    pub kernels: &'static str,
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
        Self::from_files(ModelFiles::open(dir)?, gpu, opts)
    }

    /// Puts an opened and checked model directory on the GPU.
    pub fn from_files(files: ModelFiles, gpu: &Gpu, opts: &LoadOptions) -> Result<Self> {
        let ModelFiles {
            config,
            tokenizer,
            source,
            origin,
        } = files;
        Self::build(gpu, config, source, Some(tokenizer), opts, origin)
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
        let file_dtypes = check_model(&config, &source, tokenizer.as_ref())?;
        let dtype = opts.dtype.unwrap_or(if file_dtypes == [DType::F16] {
            WeightDtype::F16
        } else {
            WeightDtype::F32
        });
        let max_chunk = opts.max_chunk_bytes.unwrap_or(u64::MAX);
        check_fits(gpu, &config, dtype, opts)?;
        let mut shader_opts = ShaderOptions::best(gpu);
        if let Some(cooperative) = opts.cooperative_kernels {
            shader_opts.cooperative = cooperative;
        }
        let kernels = Kernels::with_options(gpu, shader_opts);
        let weights = weights::upload(gpu, &config, &source, dtype, max_chunk)?;
        let info = ModelInfo {
            origin,
            n_params: config.n_params(),
            file_dtypes,
            dtype,
            weight_bytes: weights.bytes,
            embedding_buffers: weights.wte.chunks.len(),
            kernels: if shader_opts.cooperative {
                "cooperative"
            } else {
                "barrier-free"
            },
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
        max_batch(&self.config, &self.opts)
    }

    /// Rows of logits one read-back holds (bounded by the binding limit and 64 MiB).
    pub(crate) fn logit_rows(&self) -> usize {
        logit_rows(&self.config, self.gpu.limits(), self.max_batch())
    }
}

/// Reads a model directory's three parts (each parsed, nothing checked against the others).
/// A model directory opened (weights memory-mapped) and checked, not yet on a GPU: every
/// check that needs no device has passed. Lets a program report bad files before it opens an
/// adapter, without parsing anything twice.
pub struct ModelFiles {
    config: Config,
    tokenizer: Tokenizer,
    source: Source,
    origin: String,
}

impl ModelFiles {
    /// Opens `config.json`, `tokenizer.json` and the weights of `dir` and checks them.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model directory"),
            ));
        }
        let config = Config::from_file(&dir.join("config.json"))?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let source = Source::Files(SafetensorsSource::open_dir(dir)?);
        check_model(&config, &source, Some(&tokenizer))?;
        Ok(ModelFiles {
            config,
            tokenizer,
            source,
            origin: dir.display().to_string(),
        })
    }

    /// The model's config.
    pub fn config(&self) -> &Config {
        &self.config
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
        Source::Files(f) => f.check(config)?,
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
    opts.max_batch.unwrap_or(512).clamp(1, cfg.n_positions)
}

fn logit_rows(cfg: &Config, limits: &wgpu::Limits, max_batch: usize) -> usize {
    let cap = limits.max_storage_buffer_binding_size.min(64 << 20);
    let rows = cap / (cfg.vocab_size as u64 * 4);
    usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .clamp(1, max_batch)
}

/// Bytes of a (k, n) weight matrix on the GPU: k rows of n padded to a multiple of 8 (the LM
/// head's chunks each pad their own n, a few KB more; texture row pitch is not counted).
fn matrix_bytes(k: u64, n: u64, dtype: WeightDtype) -> u64 {
    k * n.next_multiple_of(8) * dtype.size() as u64
}

/// Bytes of weights on the GPU: matrices in `dtype`, vectors and `wpe` in f32.
fn weight_bytes(cfg: &Config, dtype: WeightDtype) -> u64 {
    let [c, f, v, p, l] = [
        cfg.n_embd,
        cfg.n_inner,
        cfg.vocab_size,
        cfg.n_positions,
        cfg.n_layer,
    ]
    .map(|x| x as u64);
    let m = |k, n| matrix_bytes(k, n, dtype);
    let layer = m(c, 3 * c) + m(c, c) + m(c, f) + m(f, c) + (9 * c + f) * 4;
    let heads = if cfg.tie_word_embeddings { 1 } else { 2 };
    l * layer + heads * m(v, c) + p * c * 4 + 2 * c * 4 + v * 4
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Total memory of this machine, which CPU and integrated adapters allocate from.
fn host_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Fails early, before any allocation, when the model cannot fit the device: each weight
/// texture against the adapter's texture size limit, each buffer against its binding limit,
/// and the total against the memory bound. `cfg` must
/// have passed [`Config::validate`], which keeps this arithmetic far from overflow.
fn check_fits(gpu: &Gpu, cfg: &Config, dtype: WeightDtype, opts: &LoadOptions) -> Result<()> {
    let shared = matches!(gpu.adapter().device_type.as_str(), "Cpu" | "IntegratedGpu");
    let (bound, what) = match opts.max_memory_bytes {
        Some(m) => (m, format!("LoadOptions::max_memory_bytes = {}", gib(m))),
        None => match host_memory_bytes().filter(|_| shared) {
            Some(m) => (
                m,
                format!(
                    "this machine's {} of memory, which the adapter uses",
                    gib(m)
                ),
            ),
            None => {
                let m = DEFAULT_MAX_MEMORY_BYTES;
                (m, format!("wgpt's limit of {} for one adapter", gib(m)))
            }
        },
    };
    let batch = max_batch(cfg, opts);
    let weights = weight_bytes(cfg, dtype);
    let session = forward::session_bytes(cfg, batch, logit_rows(cfg, gpu.limits(), batch));
    if weights + session > bound {
        return Err(Error::DeviceLimits(format!(
            "the model needs {} ({} of weights in {dtype} + {} of KV cache and activations for one session), more than {what}",
            gib(weights + session),
            gib(weights),
            gib(session),
        )));
    }
    let limits = gpu.limits();
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let [c, f, v, p, b] = [
        cfg.n_embd,
        cfg.n_inner,
        cfg.vocab_size,
        cfg.n_positions,
        batch,
    ]
    .map(|x| x as u64);
    let max_dim = limits.max_texture_dimension_2d as u64;
    for (name, k, n) in [
        ("attn.c_attn", c, 3 * c),
        ("mlp.c_fc", c, f),
        ("mlp.c_proj", f, c),
        ("wte", c, 8),
    ] {
        let rows = texel_rows(n as usize, dtype) as u64;
        if k > max_dim || rows > max_dim {
            return Err(Error::DeviceLimits(format!(
                "weight `{name}` ({dtype}) needs a {k}×{rows} texture, above the adapter's max_texture_dimension_2d of {max_dim}"
            )));
        }
    }
    let f32s = |name: &str, elems: u64| (name.to_string(), elems * 4);
    let buffers = [
        f32s("weight `wpe` (f32)", p * c),
        f32s("the KV cache of one layer", 2 * p * c),
        f32s("the MLP activations", b * f),
        f32s("the attention activations", b * 3 * c),
        f32s("the LM-head bias", v),
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
