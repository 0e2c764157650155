//! [`Conversation`]: a chat whose KV cache persists across turns, on a [`Session`] and the
//! model's [`ChatTemplate`].

use crate::chat::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::generation::Generation;
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// A conversation with a chat model: its messages and a [`Session`] whose KV cache holds the
/// rendered conversation, so each turn prefills only what is new (the end of the model's last
/// reply as the template writes it, and the new user message). When a new turn no longer
/// fits the context, the oldest turns are dropped (a system message stays) and the rest is
/// prefilled again.
///
/// ```no_run
/// # use wgpt::{Gpu, GpuOptions, LoadOptions, Model, SamplerConfig, Conversation};
/// let gpu = Gpu::new(&GpuOptions::default())?;
/// let model = Model::load("path/to/Qwen2.5-0.5B-Instruct", &gpu, &LoadOptions::default())?;
/// let mut chat = Conversation::new(&model, Some("You are terse."))?;
/// for turn in ["Hi!", "What is 2 + 2?"] {
///     let mut reply = chat.send(turn, SamplerConfig::greedy(), 64)?;
///     for t in &mut reply {
///         print!("{}", t?.text);
///     }
///     println!("{}", reply.finish_text());
/// }
/// # Ok::<(), wgpt::Error>(())
/// ```
pub struct Conversation<'m> {
    session: Session<'m>,
    template: &'m ChatTemplate,
    tokenizer: &'m Tokenizer,
    messages: Vec<Message>,
    /// Tokens of the cache that belong to the rendered prompt of the turn under way (the
    /// reply's tokens follow them).
    prompt_end: usize,
    /// The text the cache holds, up to `prompt_end`.
    prompt_text: String,
    /// Tokens the last turn's prompt prefilled (for statistics).
    last_prefill: usize,
    /// The prompt tokens of a turn [`Conversation::prepare`]d and not yet replied to.
    prepared: Option<Vec<u32>>,
    /// Further variables for the chat template (Qwen3's `enable_thinking`).
    template_kwargs: serde_json::Map<String, serde_json::Value>,
}

impl<'m> Conversation<'m> {
    /// A conversation with `model`, which must have a chat template, opened by `system` if
    /// given.
    pub fn new(model: &'m Model, system: Option<&str>) -> Result<Self> {
        let template = model.chat_template().ok_or_else(|| {
            Error::InvalidInput(
                "this model has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja)".into(),
            )
        })?;
        let tokenizer = model
            .tokenizer()
            .ok_or_else(|| Error::InvalidInput("this model has no tokenizer".into()))?;
        let messages = system
            .map(|s| Message::new("system", s))
            .into_iter()
            .collect();
        Ok(Conversation {
            session: model.session()?,
            template,
            tokenizer,
            messages,
            prompt_end: 0,
            prompt_text: String::new(),
            last_prefill: 0,
            prepared: None,
            template_kwargs: serde_json::Map::new(),
        })
    }

    /// Sets further variables the chat template is rendered with, as HF's
    /// `apply_chat_template(..., **kwargs)` (e.g. `{"enable_thinking": false}` for Qwen3).
    pub fn set_template_kwargs(&mut self, kwargs: serde_json::Map<String, serde_json::Value>) {
        self.template_kwargs = kwargs;
    }

    /// The messages so far (the reply under way is added at the next `send`).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The token ids in the conversation's KV cache.
    pub fn tokens(&self) -> &[u32] {
        self.session.tokens()
    }

    /// Tokens the last `send` prefilled: the new part of the conversation only, unless it
    /// had to start over.
    pub fn last_prefill_tokens(&self) -> usize {
        self.last_prefill
    }

    /// Forgets every turn (a system message stays) and empties the cache.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.session.reset();
        self.prompt_end = 0;
        self.prompt_text.clear();
        self.prepared = None;
    }

    /// The reply the session generated after the last prompt, as text.
    fn last_reply(&self) -> Result<Option<String>> {
        if self.prompt_end == 0 {
            return Ok(None);
        }
        let cached = self.session.tokens();
        let mut ids = cached[self.prompt_end.min(cached.len())..].to_vec();
        ids.extend(self.session.pending);
        Ok(Some(self.tokenizer.decode(&ids)?))
    }

    /// Adds the user's message and starts the assistant's reply: an iterator of tokens, as
    /// [`Session::generate`] gives. Stop strings and [`Generation::finish_text`] work as there.
    /// ([`Conversation::prepare`] then [`Conversation::reply`], for a caller that wants to
    /// know before the reply whether old turns were dropped.)
    pub fn send(
        &mut self,
        user: &str,
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        self.prepare(user)?;
        self.reply(sampler, max_tokens)
    }

    /// Starts the reply to the turn [`Conversation::prepare`] added.
    pub fn reply(
        &mut self,
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        let ids = self.prepared.take().ok_or_else(|| {
            Error::InvalidInput("no user message to reply to: call prepare first".into())
        })?;
        self.session
            .generate_ids_continue(&ids, sampler, max_tokens)
    }

    /// Adds the user's message and makes the turn's prompt fit the context: returns how many
    /// of the oldest turns (a user message and the replies after it) were dropped for it.
    /// [`Conversation::reply`] then generates the answer.
    pub fn prepare(&mut self, user: &str) -> Result<usize> {
        self.prepared = None;
        let mut dropped = 0;
        // What the cache holds: the last prompt and the reply after it.
        let mut cached = String::new();
        if let Some(reply) = self.last_reply()? {
            cached = format!("{}{reply}", self.prompt_text);
            self.messages.push(Message::new("assistant", reply));
        }
        self.messages.push(Message::new("user", user));
        let n_ctx = self.session.model().config.n_ctx;
        loop {
            let text = self
                .template
                .render_with(&self.messages, true, &self.template_kwargs)?;
            let (ids, fresh) = match text.strip_prefix(cached.as_str()) {
                Some(rest) if !cached.is_empty() => (self.tokenizer.encode(rest)?, false),
                _ => (self.tokenizer.encode(&text)?, true),
            };
            // The cache after the prefill: what it holds, the reply's last token if it is still
            // waiting to be fed, and the new part.
            let end = match fresh {
                true => ids.len(),
                false => {
                    self.session.position()
                        + usize::from(self.session.pending.is_some())
                        + ids.len()
                }
            };
            // Room for at least one token of reply.
            let fits = end < n_ctx;
            if !fits {
                // Drop the oldest turn, a user message and the replies after it (a system
                // message stays), and render again from scratch.
                let first = self.messages.iter().position(|m| m.role != "system");
                let turns = self.messages.iter().filter(|m| m.role == "user").count();
                match first {
                    Some(i) if turns > 1 => {
                        self.messages.remove(i);
                        while self.messages.get(i).is_some_and(|m| m.role != "user") {
                            self.messages.remove(i);
                        }
                        self.session.reset();
                        self.prompt_end = 0;
                        self.prompt_text.clear();
                        cached.clear();
                        dropped += 1;
                        continue;
                    }
                    _ => {
                        self.messages.pop();
                        return Err(Error::InvalidInput(format!(
                            "this message needs {} tokens with the template, but the context holds {n_ctx}",
                            ids.len()
                        )));
                    }
                }
            }
            if fresh {
                self.session.reset();
            }
            self.last_prefill = ids.len();
            self.prompt_text = text;
            self.prompt_end = end;
            self.prepared = Some(ids);
            return Ok(dropped);
        }
    }
}
