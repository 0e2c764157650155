//! `wgpt chat`: an interactive conversation in the terminal with a model that has a chat
//! template. Each line read from standard input is a user message; the reply streams to
//! standard output. The KV cache is kept across turns (only the new turn is prefilled);
//! `/reset` starts over, end of input ends.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use wgpt::{Conversation, StopReason};

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
    /// Tokens to generate at most per reply.
    #[arg(long, short = 'n', default_value_t = 512, allow_negative_numbers = true,
          value_parser = count_at_least::<1>)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    let files = a.model.open()?;
    let gpu = a.device.gpu()?;
    let model = a.model.load(files, &gpu, false)?;
    let mut chat = Conversation::new(&model, a.system.as_deref())?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let prompt = || {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
    };
    if interactive {
        eprintln!(
            "chatting with {} ({} tokens of context); /reset starts over, Ctrl-D ends",
            model.info().origin,
            model.config().n_ctx
        );
    }
    prompt();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let message = line.trim();
        if message.is_empty() {
            prompt();
            continue;
        }
        if message == "/reset" {
            chat.reset();
            eprintln!("(conversation reset)");
            prompt();
            continue;
        }
        let before = chat.messages().len();
        let reply = match chat.send(message, a.sampling.config(), a.max_tokens) {
            Ok(r) => r,
            // A message too long for the context: say so and go on.
            Err(e @ wgpt::Error::InvalidInput(_)) => {
                eprintln!("error: {e}");
                prompt();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
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
        drop(reply);
        if chat.messages().len() < before + 1 {
            eprintln!("(the oldest turns were dropped to fit the context)");
        }
        prompt();
    }
    Ok(())
}
