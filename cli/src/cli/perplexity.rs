//! `wgpt perplexity`: perplexity, mean NLL and bits per byte of a text file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{count_at_least, progress_bar, DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// UTF-8 text to score.
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// Window length in tokens, at least 2 (default: the model's n_positions).
    #[arg(long, short = 'c', allow_negative_numbers = true, value_parser = count_at_least::<2>)]
    context: Option<usize>,
    /// Score only the first K windows (K ≥ 1).
    #[arg(long, allow_negative_numbers = true, value_parser = count_at_least::<1>)]
    chunks: Option<usize>,
    /// Print one JSON object (and no progress bar).
    #[arg(long)]
    json: bool,
}

pub fn run(a: PerplexityArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file)
        .map_err(|e| wgpt::Error::InvalidInput(format!("cannot read {}: {e}", a.file.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        wgpt::Error::InvalidInput(format!(
            "{} is not valid UTF-8 (byte {})",
            a.file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.is_empty() {
        return Err(wgpt::Error::InvalidInput(format!(
            "{} is empty: perplexity needs at least 2 tokens",
            a.file.display()
        ))
        .into());
    }
    let files = a.model.open()?;
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu, a.json)?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| wgpt::Error::InvalidInput("the model has no tokenizer".into()))?;
    let ids = tok.encode(&text)?;
    let context = a.context.unwrap_or(model.config().n_ctx);
    let mut session = model.session()?;
    let t0 = std::time::Instant::now();
    let bar = progress_bar(
        a.json,
        "scoring",
        "{msg} [{bar:30}] {pos}/{len} windows, {eta} left",
    );
    let r = wgpt::perplexity_with_progress(
        &mut session,
        &ids,
        context,
        a.chunks,
        |id| tok.token_bytes(id),
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let r = r?;
    let secs = t0.elapsed().as_secs_f64();
    let adapter = gpu.adapter();
    let mut out = std::io::stdout().lock();
    if a.json {
        let obj = serde_json::json!({
            "perplexity": r.perplexity,
            "nll_mean": r.nll_mean,
            "tokens_scored": r.tokens_scored,
            "bits_per_byte": r.bits_per_byte,
            "windows": r.windows,
            "context": context,
            "tokens_per_s": r.tokens_scored as f64 / secs,
            "adapter": adapter.name,
            "backend": adapter.backend,
        });
        writeln!(out, "{obj}")?;
    } else {
        writeln!(out, "perplexity    {:.4}", r.perplexity)?;
        writeln!(out, "nll_mean      {:.6}", r.nll_mean)?;
        writeln!(out, "tokens_scored {}", r.tokens_scored)?;
        writeln!(out, "bits_per_byte {:.4}", r.bits_per_byte)?;
        out.flush()?;
        eprintln!(
            "[{} windows of ≤ {context} tokens, {:.1} s, {:.0} tok/s on {} ({})]",
            r.windows,
            secs,
            r.tokens_scored as f64 / secs,
            adapter.name,
            adapter.backend
        );
    }
    Ok(())
}
