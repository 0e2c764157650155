//! `wgpt serve`: the flags, the model, then the library's server (`wgpt::serve`).

use clap::Args;

use super::{count_at_least, DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// TCP port (0: any free port; the one chosen is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together (each gets its own KV cache; up to 64).
    #[arg(long, default_value_t = 8, allow_negative_numbers = true,
          value_parser = count_at_least::<1>)]
    max_batch: usize,
    /// Requests that may wait for a free sequence slot; more get 503 until one finishes.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    max_queue: usize,
    /// Prefill every prompt whole: no reuse of the KV cache of earlier prompts that a new
    /// prompt starts with (the prefix cache, on by default).
    #[arg(long)]
    no_prefix_cache: bool,
    /// The request log: `text` (one line per request) or `json` (one JSON object per line,
    /// every log line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    if a.max_batch > wgpt::Engine::MAX_BATCH {
        return Err(wgpt::Error::InvalidInput(format!(
            "at most {} sequences can be decoded together",
            wgpt::Engine::MAX_BATCH
        ))
        .into());
    }
    let files = a.model.open()?;
    let model_id = match &a.model.model {
        Some(p) => p
            .canonicalize()
            .unwrap_or_else(|_| p.clone())
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned()),
        None => "wgpt-tinyshakespeare".to_string(),
    };
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu, false)?;
    let mut opts = wgpt::ServerOptions::default();
    opts.host = a.host;
    opts.port = a.port;
    opts.max_batch = a.max_batch;
    opts.max_queue = a.max_queue;
    opts.model_id = model_id;
    opts.prefix_cache = !a.no_prefix_cache;
    opts.log_json = a.log_format == "json";
    wgpt::serve(model, &opts)?;
    Ok(())
}
