//! One sequence of an [`Engine`](super::Engine): its prompt, cache slot and position, sampler,
//! generated tokens, streaming text and stop conditions. Nothing here touches the GPU.

use crate::error::{Error, Result};
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

/// A constraint on the tokens a sequence may generate (a grammar, a JSON schema): before
/// each draw it masks the logits of the tokens it forbids, then it hears the token drawn.
pub trait TokenConstraint: Send {
    /// Sets the logits of forbidden tokens to −∞ (an eos token is allowed only where the
    /// constrained text may end).
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), String>;
    /// Takes the token drawn; true when the constrained text is complete and nothing may
    /// follow (the sequence stops there).
    fn accept(&mut self, token: u32) -> std::result::Result<bool, String>;
}

/// Makes a fresh [`TokenConstraint`] for each sequence (the `n` sequences of a request each
/// get their own).
pub trait ConstraintFactory: Send + Sync + std::fmt::Debug {
    /// A constraint at the start of the generated text.
    fn start(&self) -> std::result::Result<Box<dyn TokenConstraint>, String>;
}

/// How one sequence is generated: its sampler (with its own seed), token limit, stop
/// strings, log-probabilities, whether special tokens are left out of its text, and a
/// constraint on its tokens.
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
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (OpenAI's `logprobs` / `top_logprobs`, at most [`SequenceParams::MAX_TOP_LOGPROBS`]).
    pub logprobs: Option<usize>,
    /// Leave special tokens (`<|im_start|>`, `</s>`, …) out of the text (vLLM's
    /// `skip_special_tokens`); stop strings still see them.
    pub skip_special_tokens: bool,
    /// Constrained decoding (e.g. a JSON schema): only the tokens it allows are drawn, and
    /// the sequence stops when its text is complete.
    pub constraint: Option<std::sync::Arc<dyn ConstraintFactory>>,
}

impl SequenceParams {
    /// `max_tokens` tokens with `sampler`, no stop strings.
    pub fn new(sampler: SamplerConfig, max_tokens: usize) -> Self {
        SequenceParams {
            sampler,
            max_tokens,
            stop: Vec::new(),
            logprobs: None,
            skip_special_tokens: false,
            constraint: None,
        }
    }

    /// The most alternatives [`SequenceParams::logprobs`] may ask for (OpenAI's limit).
    pub const MAX_TOP_LOGPROBS: usize = 20;

    /// Reports log-probabilities with `top` alternatives per token.
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.logprobs = Some(top);
        self
    }

    /// Leaves special tokens out of the text (or keeps them).
    pub fn with_skip_special_tokens(mut self, skip: bool) -> Self {
        self.skip_special_tokens = skip;
        self
    }

    /// Adds stop strings (empty ones are ignored).
    pub fn with_stop<S: Into<String>>(mut self, stop: impl IntoIterator<Item = S>) -> Self {
        self.stop
            .extend(stop.into_iter().map(Into::into).filter(|s| !s.is_empty()));
        self
    }
}

/// What one [`Engine::step`](super::Engine::step) produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
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
    /// The token's log-probability and its most likely alternatives, where asked for.
    pub logprobs: Option<TokenLogprobs>,
    /// Why the sequence failed, with [`StopReason::Error`] (its own failure: the others
    /// run on).
    pub error: Option<String>,
}

/// A generated token's log-probability under the model (the log-softmax of its logits, before
/// penalties and temperature, as OpenAI reports them) and the most likely tokens' (id,
/// log-probability), most likely first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TokenLogprobs {
    /// The generated token's log-probability.
    pub logprob: f32,
    /// The most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// The log-probability of `token` and the `top` most likely tokens under `logits`.
    pub fn of(logits: &[f32], token: u32, top: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
        let log_z = max as f64 + sum.ln();
        let lp = |t: u32| (logits[t as usize] as f64 - log_z) as f32;
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let top = top.min(idx.len());
        if top > 0 && top < idx.len() {
            idx.select_nth_unstable_by(top - 1, by_logit);
        }
        idx.truncate(top);
        idx.sort_unstable_by(by_logit);
        TokenLogprobs {
            logprob: lp(token),
            top: idx.into_iter().map(|t| (t, lp(t))).collect(),
        }
    }
}

/// A sequence in a slot.
pub(crate) struct Seq {
    pub id: SequenceId,
    /// Prompt tokens (the first of `history`).
    pub prompt_len: usize,
    /// Tokens in the cache (prompt tokens reused from a cached prefix included).
    pub pos: usize,
    /// Prompt tokens found in the cache when the sequence was added (not prefilled).
    pub cached: usize,
    /// The last generated token, not yet in the cache: the next decode step feeds it.
    pub next: Option<u32>,
    /// Prompt and generated tokens (the repetition penalty's history).
    pub history: Vec<u32>,
    sampler: Sampler,
    logprobs: Option<usize>,
    skip_special: bool,
    constraint: Option<Box<dyn TokenConstraint>>,
    max_tokens: usize,
    generated: usize,
    decoder: Option<StreamDecoder>,
    stop: StopText,
}

impl Seq {
    /// A sequence whose first `cached` prompt tokens are in its slot's cache already.
    pub fn new(
        id: SequenceId,
        model: &Model,
        prompt: &[u32],
        cached: usize,
        p: &SequenceParams,
    ) -> Result<Self> {
        let decoder = match &model.tokenizer {
            Some(tok) => Some(StreamDecoder::after(tok, &prompt[prompt.len() - 1..])?),
            None => None,
        };
        Ok(Seq {
            id,
            prompt_len: prompt.len(),
            pos: cached,
            cached,
            next: None,
            history: prompt.to_vec(),
            sampler: Sampler::new(p.sampler.clone())?,
            logprobs: p.logprobs,
            skip_special: p.skip_special_tokens,
            constraint: match &p.constraint {
                Some(f) => Some(f.start().map_err(crate::error::Error::InvalidInput)?),
                None => None,
            },
            max_tokens: p.max_tokens,
            generated: 0,
            decoder,
            stop: StopText::new(p.stop.clone()),
        })
    }

    /// Prompt tokens not in the cache yet.
    pub fn prompt_left(&self) -> &[u32] {
        &self.history[self.pos.min(self.prompt_len)..self.prompt_len]
    }

    /// Samples the next token from `logits` (after `fed` more tokens entered the cache) and
    /// applies the stop conditions, as `Generation` does: eos, the token limit, a stop
    /// string, a full context.
    pub fn advance(&mut self, model: &Model, logits: &[f32], fed: usize) -> Result<SequenceOutput> {
        self.pos += fed;
        self.next = None;
        let (id, complete) = match &mut self.constraint {
            None => (self.sampler.sample(logits, &self.history), false),
            Some(c) => {
                let mut allowed = logits.to_vec();
                c.mask(&mut allowed).map_err(Error::InvalidInput)?;
                let id = self.sampler.sample(&allowed, &self.history);
                let eos = model.config.eos_token_ids.contains(&id);
                (id, !eos && c.accept(id).map_err(Error::InvalidInput)?)
            }
        };
        self.generated += 1;
        let mut out = SequenceOutput {
            id: self.id,
            token: None,
            text: String::new(),
            finish: None,
            logprobs: None,
            error: None,
        };
        if model.config.eos_token_ids.contains(&id) {
            out.finish = Some(StopReason::Eos);
            out.text = self.stop.take_held();
            return Ok(out);
        }
        self.history.push(id);
        out.token = Some(id);
        out.logprobs = self.logprobs.map(|n| TokenLogprobs::of(logits, id, n));
        let (text, stopped) = match (&model.tokenizer, &mut self.decoder) {
            // A special token left out of the text: only a stop string inside it counts.
            (Some(tok), Some(_)) if self.skip_special && tok.is_special(id) => {
                let stopped = self.stop.stops_in(&tok.decode(&[id])?);
                (String::new(), stopped)
            }
            (Some(tok), Some(d)) => self.stop.push(&d.push(tok, id)?),
            _ => self.stop.push(""),
        };
        out.text = text;
        out.finish = if stopped || complete {
            Some(StopReason::Stop)
        } else if self.generated >= self.max_tokens {
            Some(StopReason::MaxTokens)
        } else if self.pos >= model.config.n_ctx {
            Some(StopReason::Context)
        } else {
            self.next = Some(id);
            None
        };
        if out.finish.is_some() {
            out.text.push_str(&self.stop.take_held());
        }
        Ok(out)
    }
}
