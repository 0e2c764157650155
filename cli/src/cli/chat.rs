//! `wgpt chat`: an interactive conversation in the terminal with a model that has a chat
//! template. Each line read from standard input is a user message; the reply streams to
//! standard output. The KV cache is kept across turns (only the new turn is prefilled);
//! `/reset` starts over, end of input ends.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use wgpt::{Conversation, ModelFiles, StopReason};

use super::sampling::SamplingArgs;
use super::{count_at_least, DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// A system message that opens the conversation (kept by /reset).
    #[arg(long)]
    system: Option<String>,
    /// A variable for the chat template, KEY=VALUE (VALUE as JSON, else a string), as HF's
    /// apply_chat_template(**kwargs): e.g. `enable_thinking=false` for Qwen3. Repeatable.
    #[arg(long = "template-arg", value_name = "KEY=VALUE", value_parser = super::sampling::template_arg)]
    template_args: Vec<(String, serde_json::Value)>,
    /// Tokens to generate at most per reply.
    #[arg(long, short = 'n', default_value_t = 512, allow_negative_numbers = true,
          value_parser = count_at_least::<1>)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Fails, before anything is loaded, when the model has no chat template, naming where one
/// would be.
fn check_template(files: Option<&ModelFiles>) -> anyhow::Result<()> {
    let missing = match files {
        Some(f) if f.chat_template().is_some() => return Ok(()),
        Some(f) if f.is_gguf() => "this GGUF file has no chat template (no `tokenizer.chat_template` in its metadata, no chat_template.jinja or tokenizer_config.json beside it)",
        Some(_) => "this model has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja)",
        None => "the built-in model has no chat template; pass --model with an instruct model's directory or GGUF file",
    };
    Err(wgpt::Error::InvalidInput(missing.into()).into())
}

/// Where user messages come from: a line editor with history on a terminal, plain lines
/// otherwise (a pipe, a file).
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Lines(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    fn open() -> anyhow::Result<Self> {
        if std::io::stdin().is_terminal() {
            if let Ok(ed) = rustyline::DefaultEditor::new() {
                return Ok(Input::Editor(Box::new(ed)));
            }
        }
        Ok(Input::Lines(std::io::stdin().lock().lines()))
    }

    /// The next line; `None` at the end of input (Ctrl-D; Ctrl-C too on a terminal).
    fn next(&mut self) -> anyhow::Result<Option<String>> {
        match self {
            Input::Editor(ed) => match ed.readline("> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = ed.add_history_entry(line.as_str());
                    }
                    Ok(Some(line))
                }
                Err(
                    rustyline::error::ReadlineError::Eof
                    | rustyline::error::ReadlineError::Interrupted,
                ) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Input::Lines(lines) => Ok(lines.next().transpose()?),
        }
    }
}

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    let files = a.model.open()?;
    check_template(files.as_ref())?;
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu, false)?;
    let mut chat = Conversation::new(&model, a.system.as_deref())?;
    chat.set_template_kwargs(a.template_args.into_iter().collect());
    let mut input = Input::open()?;
    if matches!(input, Input::Editor(_)) {
        eprintln!(
            "chatting with {} ({} tokens of context); /reset starts over, Ctrl-D ends; ↑ ↓ recall earlier lines",
            model.info().origin,
            model.config().n_ctx
        );
    }
    let mut out = std::io::stdout().lock();
    while let Some(line) = input.next()? {
        let message = line.trim();
        if message.is_empty() {
            continue;
        }
        if message == "/reset" {
            chat.reset();
            eprintln!("(conversation reset)");
            continue;
        }
        match chat.prepare(message) {
            Ok(0) => {}
            // Said before the reply it concerns.
            Ok(n) => eprintln!(
                "(the oldest {n} turn{} dropped to fit the context)",
                if n == 1 { " was" } else { "s were" }
            ),
            // A message too long for the context: say so and go on.
            Err(e @ wgpt::Error::InvalidInput(_)) => {
                eprintln!("error: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let reply = chat.reply(a.sampling.config(), a.max_tokens)?;
        let mut reply = reply.with_stop_strings(a.sampling.stop.iter().cloned());
        for t in &mut reply {
            out.write_all(t?.text.as_bytes())?;
            out.flush()?;
        }
        out.write_all(reply.finish_text().as_bytes())?;
        writeln!(out)?;
        out.flush()?;
        if reply.stop_reason() == Some(StopReason::Context) {
            eprintln!("(the context is full: the next turn drops the oldest turns)");
        }
    }
    Ok(())
}
