//! `wgpt generate`: stream text from a prompt, or print one JSON object with `--json`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;

use super::sampling::SamplingArgs;
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
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Apply the model's chat template: the prompt is one user message (after --system),
    /// followed by the assistant's turn.
    #[arg(long)]
    chat: bool,
    /// A system message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// A variable for the chat template, KEY=VALUE (VALUE as JSON, else a string), as HF's
    /// apply_chat_template(**kwargs): e.g. `enable_thinking=false` for Qwen3. Repeatable.
    #[arg(long = "template-arg", value_name = "KEY=VALUE", requires = "chat",
          value_parser = super::sampling::template_arg)]
    template_args: Vec<(String, serde_json::Value)>,
    /// A prompt longer than the context keeps only its last tokens, leaving room for
    /// --max-tokens (which must then be below the context); says how many on stderr.
    #[arg(long)]
    truncate: bool,
    /// Print one JSON object (token_ids, text, stop_reason, speeds, adapter, backend) instead
    /// of streaming.
    #[arg(long)]
    json: bool,
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
    let prompt = if a.chat {
        let template = model.chat_template().ok_or_else(|| {
            wgpt::Error::InvalidInput(
                "--chat: this model has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja)".into(),
            )
        })?;
        let system = a
            .system
            .iter()
            .map(|s| wgpt::Message::new("system", s.as_str()));
        let messages: Vec<_> = system.chain([wgpt::Message::new("user", prompt)]).collect();
        let kwargs = a.template_args.iter().cloned().collect();
        template.render_with(&messages, true, &kwargs)?
    } else {
        prompt
    };
    let tok = model
        .tokenizer()
        .ok_or_else(|| wgpt::Error::InvalidInput("the model has no tokenizer".into()))?;
    // A rendered chat template holds its own BOS (as HF's apply_chat_template encodes it); a
    // plain prompt gets the special tokens the tokenizer adds (a BOS for Llama-family
    // tokenizers).
    let mut ids = match a.chat {
        true => tok.encode(&prompt)?,
        false => tok.encode_with_specials(&prompt)?,
    };
    let n_ctx = model.config().n_ctx;
    let mut echo = prompt.clone();
    if ids.len() > n_ctx {
        if !a.truncate {
            return Err(wgpt::Error::InvalidInput(format!(
                "the prompt has {} tokens but the context in use is {n_ctx}; shorten it, pass --truncate or raise --ctx (the model's context is {})",
                ids.len(),
                model.config().n_positions
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
        // A leading BOS stays in front of the kept tokens.
        let bos = usize::from(ids.first().is_some_and(|&t| Some(t) == tok.bos_token_id()));
        ids.drain(bos..ids.len() - keep + bos);
        echo = tok.decode(&ids[bos..])?;
    }
    let sampler = a.sampling.config();
    let mut session = model.session()?;
    session.warm_up()?;
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        out.write_all(echo.as_bytes())?;
        out.flush()?;
    }
    let mut gen = session
        .generate_ids(&ids, sampler, a.max_tokens)?
        .with_stop_strings(a.sampling.stop.iter().cloned());
    let mut text = String::new();
    for t in &mut gen {
        let t = t?;
        if !a.json {
            out.write_all(t.text.as_bytes())?;
            out.flush()?;
        }
        text.push_str(&t.text);
    }
    // Text held back in case it began a stop string belongs to the output after all.
    let held = gen.finish_text();
    if !a.json {
        out.write_all(held.as_bytes())?;
    }
    text.push_str(&held);
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
            "dtype": model.info().storage(),
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
