//! `wgpt info`: the adapters of every backend, the chosen one's limits and features, and the
//! model's config (as its `config.json` names things) and footprint.

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use super::{DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// A config.json value as the file writes it (strings without quotes).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let files = a.model.open()?;
    // Every adapter of every backend (or of --backend / WGPU_BACKEND).
    let all = wgpt::Gpu::adapters(&a.device.options())?;
    let gpu = a.device.gpu()?;
    let l = gpu.limits();
    let named = [
        (wgpt::wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        (wgpt::wgpu::Features::SHADER_F16, "SHADER_F16"),
        (wgpt::wgpu::Features::SUBGROUP, "SUBGROUP"),
    ];
    let features: Vec<&str> = named
        .iter()
        .filter(|(f, _)| gpu.features().contains(*f))
        .map(|(_, n)| *n)
        .collect();
    let limits = [
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_texture_dimension_2d",
            l.max_texture_dimension_2d.into(),
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size.into(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension.into(),
        ),
    ];
    let model = a.model.load(files, &gpu, a.json)?;
    let i = model.info();
    // The config as the file has it: keys and values under their own names.
    let config: serde_json::Map<String, Value> = model
        .config_json()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let dts: Vec<String> = i.file_dtypes.iter().map(|d| d.to_string()).collect();
    let chosen = gpu.adapter();
    let mut out = std::io::stdout().lock();
    if a.json {
        let adapter = |s: &wgpt::AdapterSummary| json!({"name": s.name, "backend": s.backend, "device_type": s.device_type, "driver": s.driver});
        let mut chosen_json = adapter(chosen);
        chosen_json["limits"] = limits
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        chosen_json["features"] = json!(features);
        let obj = json!({
            "adapters": all.iter().map(adapter).collect::<Vec<_>>(),
            "chosen": chosen_json,
            "model": {
                "origin": i.origin,
                "config": config,
                "parameters": i.n_params,
                "file_dtypes": dts,
                "dtype": i.dtype.to_string(),
                "gpu_dtypes": i.gpu_dtypes.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "kernels": i.kernels.name(),
                "weight_bytes": i.weight_bytes,
                "kv_cache_bytes": i.kv_cache_bytes,
                "kv_cache_dtype": i.kv.name(),
                "context": i.n_ctx,
                "model_context": model.config().n_positions,
                "n_kv_head": model.config().n_kv_head(),
                "n_head": model.config().n_head,
            },
        });
        writeln!(out, "{obj}")?;
        return Ok(());
    }
    writeln!(out, "adapters:")?;
    for s in &all {
        writeln!(out, "  {s}  driver: {}", s.driver)?;
    }
    writeln!(out, "chosen: {chosen}")?;
    for (k, v) in limits {
        writeln!(out, "  {k} {v}")?;
    }
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    writeln!(out, "  features used: {features}")?;
    writeln!(out, "model: {}", i.origin)?;
    // A model loaded from a file (not a directory) is a GGUF file.
    let what = match std::path::Path::new(&i.origin).is_file() {
        true => "GGUF metadata (as config.json keys)",
        false => "config.json",
    };
    writeln!(out, "  {what}:")?;
    for (k, v) in &config {
        writeln!(out, "    {k} {}", plain(v))?;
    }
    writeln!(out, "  parameters {}", i.n_params)?;
    let on_gpu: Vec<&str> = i.gpu_dtypes.iter().map(|d| d.name()).collect();
    writeln!(
        out,
        "  file dtypes {}; on GPU {}",
        dts.join(", "),
        on_gpu.join(", ")
    )?;
    writeln!(out, "  kernels {}", i.kernels)?;
    writeln!(
        out,
        "  weights on GPU {} bytes ({:.1} MB)",
        i.weight_bytes,
        i.weight_bytes as f64 / 1e6
    )?;
    let c = model.config();
    writeln!(
        out,
        "  context {} positions in use (--ctx) of the model's {}",
        i.n_ctx, c.n_positions
    )?;
    writeln!(
        out,
        "  KV cache {} bytes ({:.1} MB, {}) per session: {} key/value heads for {} query heads",
        i.kv_cache_bytes,
        i.kv_cache_bytes as f64 / 1e6,
        i.kv,
        c.n_kv_head(),
        c.n_head
    )?;
    Ok(())
}
