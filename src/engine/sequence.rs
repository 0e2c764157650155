//! One sequence of an [`Engine`](super::Engine): its prompt, cache slot and position, sampler,
//! generated tokens, streaming text and stop conditions. Nothing here touches the GPU.

use crate::error::Result;
use crate::generation::{StopReason, StopText};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::StreamDecoder;

/// Identifies a sequence of an [`Engine`](super::Engine) (unique per engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SequenceId(pub u64);

impl std::fmt::Display for SequenceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq-{}", self.0)
    }
}

/// How one sequence is generated: its sampler (with its own seed), token limit and stop
/// strings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SequenceParams {
    /// Sampling; [`SamplerConfig::greedy`] gives the same ids as the session's greedy
    /// decoding.
    pub sampler: SamplerConfig,
    /// At most this many tokens are generated (≥ 1).
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these (OpenAI's `stop`): the text before
    /// it is returned, the stop string is not.
    pub stop: Vec<String>,
}

impl SequenceParams {
    /// `max_tokens` tokens with `sampler`, no stop strings.
    pub fn new(sampler: SamplerConfig, max_tokens: usize) -> Self {
        SequenceParams {
            sampler,
            max_tokens,
            stop: Vec::new(),
        }
    }

    /// Adds stop strings (empty ones are ignored).
    pub fn with_stop<S: Into<String>>(mut self, stop: impl IntoIterator<Item = S>) -> Self {
        self.stop
            .extend(stop.into_iter().map(Into::into).filter(|s| !s.is_empty()));
        self
    }
}

/// What one [`Engine::step`](super::Engine::step) produced for one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SequenceOutput {
    /// The sequence.
    pub id: SequenceId,
    /// The token generated (none when the step only ends the sequence, e.g. at its eos
    /// token, which is not returned).
    pub token: Option<u32>,
    /// New text (may be empty while a multi-byte character or a possible stop string is
    /// incomplete; at the end it includes any text held back).
    pub text: String,
    /// Set when the sequence is done; its slot is free again.
    pub finish: Option<StopReason>,
}

/// A sequence in a slot.
pub(crate) struct Seq {
    pub id: SequenceId,
    /// The prompt, until it is prefilled.
    pub prompt: Option<Vec<u32>>,
    /// Tokens in the cache.
    pub pos: usize,
    /// The last generated token, not yet in the cache: the next decode step feeds it.
    pub next: Option<u32>,
    /// Prompt and generated tokens (the repetition penalty's history).
    history: Vec<u32>,
    sampler: Sampler,
    max_tokens: usize,
    generated: usize,
    decoder: Option<StreamDecoder>,
    stop: StopText,
}

impl Seq {
    pub fn new(id: SequenceId, model: &Model, prompt: &[u32], p: &SequenceParams) -> Result<Self> {
        let decoder = match &model.tokenizer {
            Some(tok) => Some(StreamDecoder::after(tok, &prompt[prompt.len() - 1..])?),
            None => None,
        };
        Ok(Seq {
            id,
            prompt: Some(prompt.to_vec()),
            pos: 0,
            next: None,
            history: prompt.to_vec(),
            sampler: Sampler::new(p.sampler.clone())?,
            max_tokens: p.max_tokens,
            generated: 0,
            decoder,
            stop: StopText::new(p.stop.clone()),
        })
    }

    /// Samples the next token from `logits` (after `fed` more tokens entered the cache) and
    /// applies the stop conditions, as `Generation` does: eos, the token limit, a stop
    /// string, a full context.
    pub fn advance(&mut self, model: &Model, logits: &[f32], fed: usize) -> Result<SequenceOutput> {
        self.pos += fed;
        self.next = None;
        let id = self.sampler.sample(logits, &self.history);
        self.generated += 1;
        let mut out = SequenceOutput {
            id: self.id,
            token: None,
            text: String::new(),
            finish: None,
        };
        if model.config.eos_token_ids.contains(&id) {
            out.finish = Some(StopReason::Eos);
            out.text = self.stop.take_held();
            return Ok(out);
        }
        self.history.push(id);
        out.token = Some(id);
        let text = match (&model.tokenizer, &mut self.decoder) {
            (Some(tok), Some(d)) => d.push(tok, id)?,
            _ => String::new(),
        };
        let (text, stopped) = self.stop.push(&text);
        out.text = text;
        out.finish = if stopped {
            Some(StopReason::Stop)
        } else if self.generated >= self.max_tokens {
            Some(StopReason::MaxTokens)
        } else if self.pos >= model.config.n_ctx {
            Some(StopReason::Context)
        } else {
            self.next = Some(id);
            None
        };
        if matches!(out.finish, Some(r) if r != StopReason::Stop) {
            out.text.push_str(&self.stop.take_held());
        }
        Ok(out)
    }
}
