//! Whether a model fits the device, checked before anything is allocated: each weight
//! texture against the texture size limit, each buffer against the binding limit, weights plus
//! a session's KV cache and activations against the memory bound.

use super::activations;
use super::family::tensor_list;
use super::options::{LoadOptions, DEFAULT_MAX_MEMORY_BYTES};
use super::tensors::Stored;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{texel_rows, KvDtype, WeightDtype};

pub(crate) fn max_batch(cfg: &Config, opts: &LoadOptions) -> usize {
    opts.max_batch.unwrap_or(512).clamp(1, cfg.n_ctx)
}

pub(crate) fn logit_rows(cfg: &Config, limits: &wgpu::Limits, max_batch: usize) -> usize {
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
pub(crate) fn check_dtype(asked: Option<WeightDtype>) -> Result<()> {
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
pub(crate) fn check_fits(
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
    let session = activations::session_bytes(cfg, kv, batch, logit_rows(cfg, gpu.limits(), batch));
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
    let gate_up = activations::gate_up_width(cfg) as u64;
    let f32s = |name: &str, elems: u64| (name.to_string(), elems * 4);
    let buffers = [
        (
            format!("the KV cache of one layer ({p} positions, {kv}; --ctx sets the positions)"),
            activations::kv_largest_layer_bytes(cfg, kv, batch),
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
