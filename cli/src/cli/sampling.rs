//! The sampling flags `generate` and `chat` share, with their value checks.

use clap::Args;
use wgpt::SamplerConfig;

use super::count_at_least;

/// How tokens are drawn, and where generation stops besides eos and the token limit.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy.
    #[arg(long, short = 't', default_value_t = SamplerConfig::default().temperature,
          allow_negative_numbers = true, value_parser = non_negative)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = SamplerConfig::default().top_k, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P, in (0, 1].
    #[arg(long, default_value_t = SamplerConfig::default().top_p, allow_negative_numbers = true,
          value_parser = unit_interval)]
    pub top_p: f32,
    /// Repetition penalty over prompt and output (1 = off), > 0.
    #[arg(long, default_value_t = SamplerConfig::default().repeat_penalty,
          allow_negative_numbers = true, value_parser = positive)]
    pub repeat_penalty: f32,
    /// Random seed; the same seed gives the same text.
    #[arg(long, default_value_t = SamplerConfig::default().seed, allow_negative_numbers = true,
          value_parser = super::at_least::<0>)]
    pub seed: u64,
    /// Stop when the output contains this text (repeatable); the text before it is kept.
    #[arg(long = "stop", value_name = "STRING")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The sampler the flags describe.
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig::default()
            .with_temperature(self.temperature)
            .with_top_k(self.top_k)
            .with_top_p(self.top_p)
            .with_repeat_penalty(self.repeat_penalty)
            .with_seed(self.seed)
    }
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

/// `--template-arg KEY=VALUE`: VALUE read as JSON (`false`, `3`, `"x"`), else as a string.
pub(super) fn template_arg(s: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((key.to_string(), value))
}
