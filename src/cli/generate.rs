//! `wgpt generate`: stream text from a prompt, or print one JSON object with `--json`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use wgpt::SamplerConfig;

use super::{DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// The prompt text.
    #[arg(
        long,
        short = 'p',
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    prompt: Option<String>,
    /// Read the prompt from a UTF-8 file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, short = 't', default_value_t = 0.8, value_parser = non_negative)]
    temperature: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P, in (0, 1].
    #[arg(long, default_value_t = 0.95, value_parser = unit_interval)]
    top_p: f32,
    /// Repetition penalty over prompt and output (1 = off), > 0.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    repeat_penalty: f32,
    /// Random seed; the same seed gives the same text.
    #[arg(long, default_value_t = 299792458)]
    seed: u64,
    /// Keep only the last tokens of a prompt longer than the context (leaving room for the output).
    #[arg(long)]
    truncate: bool,
    /// Print one JSON object (token_ids, text, stop_reason, speeds, adapter) instead of streaming.
    #[arg(long)]
    json: bool,
}

fn parse_f32(s: &str) -> Result<f32, String> {
    s.parse::<f32>()
        .map_err(|_| format!("`{s}` is not a number"))
        .and_then(|v| {
            if v.is_finite() {
                Ok(v)
            } else {
                Err("must be finite".into())
            }
        })
}

fn non_negative(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v < 0.0 {
        Err(format!("must be ≥ 0, got {v}"))
    } else {
        Ok(v)
    }
}

fn positive(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v <= 0.0 {
        Err(format!("must be > 0, got {v}"))
    } else {
        Ok(v)
    }
}

fn unit_interval(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v <= 0.0 || v > 1.0 {
        Err(format!("must be in (0, 1], got {v}"))
    } else {
        Ok(v)
    }
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let prompt = match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            let bytes = std::fs::read(f).map_err(|e| {
                wgpt::Error::InvalidInput(format!("cannot read prompt file {}: {e}", f.display()))
            })?;
            String::from_utf8(bytes).map_err(|e| {
                wgpt::Error::InvalidInput(format!(
                    "prompt file {} is not valid UTF-8 (byte {})",
                    f.display(),
                    e.utf8_error().valid_up_to()
                ))
            })?
        }
        (None, None) => unreachable!("clap requires --prompt or --prompt-file"),
    };
    if prompt.is_empty() {
        return Err(wgpt::Error::InvalidInput("the prompt is empty".into()).into());
    }
    let files = a.model.open()?;
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu)?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| wgpt::Error::InvalidInput("the model has no tokenizer".into()))?;
    let mut ids = tok.encode(&prompt)?;
    let n_ctx = model.config().n_positions;
    if ids.len() > n_ctx {
        if !a.truncate {
            return Err(wgpt::Error::InvalidInput(format!(
                "the prompt has {} tokens but the model's context is {n_ctx}; shorten it or pass --truncate",
                ids.len()
            ))
            .into());
        }
        let keep = n_ctx.saturating_sub(a.max_tokens).max(1);
        ids.drain(..ids.len() - keep);
        log::warn!("prompt truncated to its last {keep} tokens");
    }
    let sampler = SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repeat_penalty: a.repeat_penalty,
        seed: a.seed,
    };
    let mut session = model.session()?;
    session.warm_up()?;
    let mut gen = session.generate_ids(&ids, sampler, a.max_tokens)?;
    let mut text = String::new();
    let mut out = std::io::stdout().lock();
    for t in &mut gen {
        let t = t?;
        if !a.json {
            out.write_all(t.text.as_bytes())?;
            out.flush()?;
        }
        text.push_str(&t.text);
    }
    let stop = gen.stop_reason().map_or("max_tokens", |s| s.as_str());
    if a.json {
        let obj = serde_json::json!({
            "token_ids": gen.tokens(),
            "text": text,
            "stop_reason": stop,
            "prompt_tokens": gen.prompt_tokens(),
            "generated_tokens": gen.tokens().len(),
            "prefill_tokens_per_s": gen.prefill_tokens_per_s(),
            "decode_tokens_per_s": gen.decode_tokens_per_s(),
            "adapter": gpu.adapter().name,
            "backend": gpu.adapter().backend,
            "dtype": model.info().dtype.to_string(),
        });
        writeln!(out, "{obj}")?;
    } else {
        writeln!(out)?;
        eprintln!(
            "[{} prompt tokens, {} generated, stop: {stop}; prefill {:.1} tok/s, decode {:.1} tok/s on {}]",
            gen.prompt_tokens(),
            gen.tokens().len(),
            gen.prefill_tokens_per_s(),
            gen.decode_tokens_per_s(),
            gpu.adapter().name
        );
    }
    Ok(())
}
