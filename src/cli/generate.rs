//! `wgpt generate`: stream text from a prompt, or print one JSON object with `--json`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use wgpt::SamplerConfig;

use super::{count_at_least, DeviceArgs, ModelArgs};

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
    /// Read the prompt from a UTF-8 file; `-` reads standard input.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Print the prompt before the generated text (as the model reads it, after --truncate).
    /// With --json: a `prompt` field.
    #[arg(long)]
    echo: bool,
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 128, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, short = 't', default_value_t = SamplerConfig::default().temperature,
          allow_negative_numbers = true, value_parser = non_negative)]
    temperature: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = SamplerConfig::default().top_k, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P, in (0, 1].
    #[arg(long, default_value_t = SamplerConfig::default().top_p, allow_negative_numbers = true,
          value_parser = unit_interval)]
    top_p: f32,
    /// Repetition penalty over prompt and output (1 = off), > 0.
    #[arg(long, default_value_t = SamplerConfig::default().repeat_penalty,
          allow_negative_numbers = true, value_parser = positive)]
    repeat_penalty: f32,
    /// Random seed; the same seed gives the same text.
    #[arg(long, default_value_t = SamplerConfig::default().seed, allow_negative_numbers = true,
          value_parser = super::at_least::<0>)]
    seed: u64,
    /// A prompt longer than the context keeps only its last tokens, leaving room for
    /// --max-tokens (which must then be below the context); says how many on stderr.
    #[arg(long)]
    truncate: bool,
    /// Print one JSON object (token_ids, text, stop_reason, speeds, adapter, backend) instead
    /// of streaming.
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

/// The prompt from `--prompt`, `--prompt-file FILE` or `--prompt-file -` (stdin).
fn read_prompt(a: &GenerateArgs) -> anyhow::Result<String> {
    let Some(f) = &a.prompt_file else {
        return Ok(a.prompt.clone().unwrap_or_default());
    };
    let (name, bytes) = if f.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| {
                wgpt::Error::InvalidInput(format!(
                    "cannot read the prompt from standard input: {e}"
                ))
            })?;
        ("from standard input".to_string(), bytes)
    } else {
        let bytes = std::fs::read(f).map_err(|e| {
            wgpt::Error::InvalidInput(format!("cannot read prompt file {}: {e}", f.display()))
        })?;
        (format!("file {}", f.display()), bytes)
    };
    String::from_utf8(bytes).map_err(|e| {
        wgpt::Error::InvalidInput(format!(
            "prompt {name} is not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let prompt = read_prompt(&a)?;
    if prompt.is_empty() {
        return Err(wgpt::Error::InvalidInput("the prompt is empty".into()).into());
    }
    let files = a.model.open()?;
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu, a.json)?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| wgpt::Error::InvalidInput("the model has no tokenizer".into()))?;
    let mut ids = tok.encode(&prompt)?;
    let n_ctx = model.config().n_positions;
    let mut echo = prompt.clone();
    if ids.len() > n_ctx {
        if !a.truncate {
            return Err(wgpt::Error::InvalidInput(format!(
                "the prompt has {} tokens but the model's context is {n_ctx}; shorten it or pass --truncate",
                ids.len()
            ))
            .into());
        }
        if a.max_tokens >= n_ctx {
            return Err(wgpt::Error::InvalidInput(format!(
                "--truncate cannot leave room for --max-tokens {} in the model's context of {n_ctx} tokens; pass --max-tokens below {n_ctx}",
                a.max_tokens
            ))
            .into());
        }
        let keep = n_ctx - a.max_tokens;
        eprintln!(
            "note: the prompt has {} tokens; kept its last {keep} so that {} new tokens fit the model's context of {n_ctx}",
            ids.len(),
            a.max_tokens
        );
        ids.drain(..ids.len() - keep);
        echo = tok.decode(&ids)?;
    }
    let sampler = SamplerConfig::default()
        .with_temperature(a.temperature)
        .with_top_k(a.top_k)
        .with_top_p(a.top_p)
        .with_repeat_penalty(a.repeat_penalty)
        .with_seed(a.seed);
    let mut session = model.session()?;
    session.warm_up()?;
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        out.write_all(echo.as_bytes())?;
        out.flush()?;
    }
    let mut gen = session.generate_ids(&ids, sampler, a.max_tokens)?;
    let mut text = String::new();
    for t in &mut gen {
        let t = t?;
        if !a.json {
            out.write_all(t.text.as_bytes())?;
            out.flush()?;
        }
        text.push_str(&t.text);
    }
    let stop = gen.stop_reason().map_or("max_tokens", |s| s.as_str());
    let adapter = gpu.adapter();
    if a.json {
        let mut obj = serde_json::json!({
            "token_ids": gen.tokens(),
            "text": text,
            "stop_reason": stop,
            "prompt_tokens": gen.prompt_tokens(),
            "generated_tokens": gen.tokens().len(),
            "prefill_tokens_per_s": gen.prefill_tokens_per_s(),
            "decode_tokens_per_s": gen.decode_tokens_per_s(),
            "adapter": adapter.name,
            "backend": adapter.backend,
            "dtype": model.info().dtype.to_string(),
        });
        if a.echo {
            obj["prompt"] = echo.into();
        }
        writeln!(out, "{obj}")?;
    } else {
        writeln!(out)?;
        out.flush()?;
        eprintln!(
            "[{} prompt tokens, {} generated, stop: {stop}; prefill {:.1} tok/s, decode {:.1} tok/s on {} ({})]",
            gen.prompt_tokens(),
            gen.tokens().len(),
            gen.prefill_tokens_per_s(),
            gen.decode_tokens_per_s(),
            adapter.name,
            adapter.backend
        );
    }
    Ok(())
}
