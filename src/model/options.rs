//! [`LoadOptions`]: how a model is put on the GPU (weight format, KV cache, context, kernel
//! family, memory bound, batch size).

use crate::kernels::{KernelFamily, KvDtype, WeightDtype};

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
    /// [`DEFAULT_CONTEXT`](crate::DEFAULT_CONTEXT) capped by the model's context, `Some(0)` the model's whole context,
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
