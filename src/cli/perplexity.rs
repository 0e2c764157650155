//! `wgpt perplexity`: perplexity, mean NLL and bits per byte of a text file.

use std::path::PathBuf;

use clap::Args;

use super::{DeviceArgs, ModelArgs};

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
    #[arg(long, short = 'c', value_parser = at_least::<2>)]
    context: Option<usize>,
    /// Score only the first K windows (K ≥ 1).
    #[arg(long, value_parser = at_least::<1>)]
    chunks: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v >= MIN => Ok(v),
        Ok(v) => Err(format!("must be ≥ {MIN}, got {v}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
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
    let model = a.model.load(files, &gpu)?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| wgpt::Error::InvalidInput("the model has no tokenizer".into()))?;
    let ids = tok.encode(&text)?;
    let context = a.context.unwrap_or(model.config().n_positions);
    let mut session = model.session()?;
    let t0 = std::time::Instant::now();
    let r = wgpt::perplexity(&mut session, &ids, context, a.chunks, |id| {
        tok.token_bytes(id)
    })?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let obj = serde_json::json!({
            "perplexity": r.perplexity,
            "nll_mean": r.nll_mean,
            "tokens_scored": r.tokens_scored,
            "bits_per_byte": r.bits_per_byte,
            "windows": r.windows,
            "context": context,
            "tokens_per_s": r.tokens_scored as f64 / secs,
            "adapter": gpu.adapter().name,
        });
        println!("{obj}");
    } else {
        println!("perplexity    {:.4}", r.perplexity);
        println!("nll_mean      {:.6}", r.nll_mean);
        println!("tokens_scored {}", r.tokens_scored);
        println!("bits_per_byte {:.4}", r.bits_per_byte);
        eprintln!(
            "[{} windows of ≤ {context} tokens, {:.1} s, {:.0} tok/s on {}]",
            r.windows,
            secs,
            r.tokens_scored as f64 / secs,
            gpu.adapter().name
        );
    }
    Ok(())
}
