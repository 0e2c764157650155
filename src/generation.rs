//! Text generation on a [`Session`]: [`Generation`], an iterator of tokens that prefills the
//! prompt, then decodes one token per step until an eos token, a token limit, a stop string
//! or the end of the context ([`StopReason`]), sampling on the CPU, or on the GPU for greedy decoding.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::Session;
use crate::tokenizer::StreamDecoder;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The context window (n_positions) is full.
    Context,
    /// A step failed; the iterator returned the error.
    Error,
    /// The output contained one of the stop strings ([`Generation::with_stop_strings`]).
    Stop,
}

impl StopReason {
    /// `eos`, `max_tokens`, `context`, `error` or `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::Context => "context",
            StopReason::Error => "error",
            StopReason::Stop => "stop",
        }
    }
}

/// A generated token and the text it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GeneratedToken {
    /// The token id.
    pub id: u32,
    /// New text (may be empty while a multi-byte character is incomplete).
    pub text: String,
}

impl<'m> Session<'m> {
    /// Generates up to `max_tokens` tokens after `prompt`, streaming them as an iterator.
    /// The cache is reset first. The prompt is encoded with the special tokens the tokenizer
    /// adds to a text ([`crate::Tokenizer::encode_with_specials`]: a BOS for Llama-family
    /// tokenizers); a chat template's rendered text, which holds its own BOS, goes through
    /// [`Session::generate_ids`] with [`crate::Tokenizer::encode`].
    pub fn generate(
        &mut self,
        prompt: &str,
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        let ids = self.encode(prompt, true)?;
        self.generate_ids(&ids, sampler, max_tokens)
    }

    /// Like [`Session::generate`] but from token ids.
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        let n_ctx = self.model().config.n_ctx;
        if prompt.len() > n_ctx {
            return Err(Error::InvalidInput(format!(
                "the prompt has {} tokens but the context holds {n_ctx} (LoadOptions::ctx, --ctx); shorten it",
                prompt.len()
            )));
        }
        let sampler = Sampler::new(sampler)?;
        self.reset();
        self.start(prompt.to_vec(), sampler, max_tokens)
    }

    /// Like [`Session::generate`] but keeps the cache: `prompt` is appended after what the
    /// session already holds, without running that again. A multi-turn caller passes only the
    /// new turn; the text generated before (the last token a previous generation returned is
    /// fed first, as it is not in the cache yet; an eos token that ended one is not) and the
    /// earlier turns stay in the context. The repetition penalty sees the whole conversation.
    /// The result is that of [`Session::generate_ids`] on the whole conversation at once.
    /// `prompt` may be empty to go on after a generation that stopped at `max_tokens`.
    pub fn generate_continue(
        &mut self,
        prompt: &str,
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        // A text that starts the context gets the tokenizer's specials (its BOS); one that
        // continues it does not.
        let starts = self.position() == 0 && self.pending.is_none();
        let ids = if prompt.is_empty() {
            Vec::new()
        } else {
            self.encode(prompt, starts)?
        };
        self.generate_ids_continue(&ids, sampler, max_tokens)
    }

    /// Like [`Session::generate_continue`] but from token ids.
    pub fn generate_ids_continue(
        &mut self,
        prompt: &[u32],
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        let input: Vec<u32> = self.pending.iter().chain(prompt).copied().collect();
        if input.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to continue from: the prompt is empty and no generated token is waiting to be fed"
                    .into(),
            ));
        }
        let n_ctx = self.model().config.n_ctx;
        if self.position() + input.len() > n_ctx {
            return Err(Error::InvalidInput(format!(
                "{} more tokens do not fit after the {} in the cache: the context holds {n_ctx}",
                input.len(),
                self.position()
            )));
        }
        let sampler = Sampler::new(sampler)?;
        self.start(input, sampler, max_tokens)
    }

    /// `text`'s ids, with the special tokens the tokenizer adds to a text (its BOS) where
    /// `specials`.
    fn encode(&self, text: &str, specials: bool) -> Result<Vec<u32>> {
        let tok = self.model().tokenizer.as_ref().ok_or_else(|| {
            Error::InvalidInput("this model has no tokenizer; use generate_ids".into())
        })?;
        match specials {
            true => tok.encode_with_specials(text),
            false => tok.encode(text),
        }
    }

    /// A generation that prefills `input` after the cache's tokens.
    fn start(
        &mut self,
        input: Vec<u32>,
        sampler: Sampler,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        let model: &'m crate::model::Model = self.model();
        // The last prompt token gives the first piece of text its context (`input` is not
        // empty: both callers check).
        let decoder = match &model.tokenizer {
            Some(tok) => Some(StreamDecoder::after(tok, &input[input.len() - 1..])?),
            None => None,
        };
        let mut history = self.tokens().to_vec();
        history.extend_from_slice(&input);
        Ok(Generation {
            first_generated: history.len(),
            prompt_len: input.len(),
            input,
            history,
            session: self,
            sampler,
            max_tokens,
            generated: 0,
            decoder,
            stop: None,
            prefill_time: Duration::ZERO,
            decode_start: None,
            decode_time: Duration::ZERO,
            decode_steps: 0,
            stop_text: StopText::default(),
        })
    }
}

/// Stop strings over the generated text: text that could still be the start of one is held
/// back until the next token decides.
#[derive(Debug, Default)]
pub(crate) struct StopText {
    strings: Vec<String>,
    held: String,
    /// Where each pushed token's text ends in the decoded text (bytes, cumulative).
    ends: Vec<usize>,
    /// Bytes of the decoded text returned so far.
    shown: usize,
}

impl StopText {
    /// Stop strings (empty ones are ignored).
    pub(crate) fn new(strings: Vec<String>) -> Self {
        StopText {
            strings: strings.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    /// The text held back, which belongs to the output once generation ended otherwise.
    pub(crate) fn take_held(&mut self) -> String {
        self.shown += self.held.len();
        std::mem::take(&mut self.held)
    }

    /// How many of the pushed tokens have text in what was returned: after a stop string,
    /// the tokens that only spelled the stop string (or text after it) are not counted.
    pub(crate) fn tokens_shown(&self) -> usize {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .filter(|&(start, _)| start < self.shown)
            .count()
    }

    /// Whether `text` alone (a special token's, left out of the output) holds a stop string.
    pub(crate) fn stops_in(&self, text: &str) -> bool {
        self.strings.iter().any(|s| text.contains(s.as_str()))
    }

    /// Adds a token's text; returns the text that can be shown and whether a stop string
    /// completed (the text before it is returned, the stop string and what follows are not).
    pub(crate) fn push(&mut self, text: &str) -> (String, bool) {
        let (out, stopped) = self.filter(text);
        self.ends
            .push(self.ends.last().copied().unwrap_or(0) + text.len());
        self.shown += out.len();
        (out, stopped)
    }

    fn filter(&mut self, text: &str) -> (String, bool) {
        if self.strings.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);
        let held = &self.held;
        if let Some(i) = self
            .strings
            .iter()
            .filter_map(|s| held.find(s.as_str()))
            .min()
        {
            let out = held[..i].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest end of the text that a stop string begins with.
        let keep = self
            .strings
            .iter()
            .map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| s.is_char_boundary(k) && held.ends_with(&s[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..held.len() - keep).collect();
        (out, false)
    }
}

/// A running generation: an iterator of tokens. After it ends, [`Generation::stop_reason`]
/// says why and the timing methods give speeds.
pub struct Generation<'s, 'm> {
    session: &'s mut Session<'m>,
    sampler: Sampler,
    /// The tokens this generation prefills (a continued one: the waiting token, then the new
    /// prompt).
    input: Vec<u32>,
    /// Every token of the conversation: the cache's, `input`, then the generated ones (for
    /// the repetition penalty).
    history: Vec<u32>,
    /// Where the generated tokens start in `history`.
    first_generated: usize,
    prompt_len: usize,
    max_tokens: usize,
    generated: usize,
    decoder: Option<StreamDecoder>,
    stop: Option<StopReason>,
    prefill_time: Duration,
    /// When the first decode step started.
    decode_start: Option<Instant>,
    /// From `decode_start` to the end of the last decode step.
    decode_time: Duration,
    decode_steps: usize,
    stop_text: StopText,
}

impl Generation<'_, '_> {
    /// Stops when the output contains any of `strings` (empty ones are ignored), as OpenAI's
    /// `stop`: the text before it is returned, the stop string is not, and the stop reason is
    /// [`StopReason::Stop`]. Text that could begin a stop string is held back until the next
    /// token decides; when generation ends for another reason, [`Generation::finish_text`]
    /// returns it.
    pub fn with_stop_strings<S: Into<String>>(
        mut self,
        strings: impl IntoIterator<Item = S>,
    ) -> Self {
        self.stop_text.strings = strings
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| !s.is_empty())
            .collect();
        self
    }

    /// Text held back because it could have begun a stop string; once the generation has
    /// ended without one it belongs to the output (empty without stop strings).
    pub fn finish_text(&mut self) -> String {
        self.stop_text.take_held()
    }

    /// Why generation stopped (`None` while it runs).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }

    /// Generated token ids so far. After a stop string ([`StopReason::Stop`]), the tokens of
    /// the returned text: those that only spelled the stop string are left out, as its text
    /// is (a token whose text is partly before the stop string stays).
    pub fn tokens(&self) -> &[u32] {
        &self.history[self.first_generated..]
    }

    /// Prompt tokens per second of prefill.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prompt_len, self.prefill_time)
    }

    /// Decode steps per second (each a single-token forward), over the wall time from the
    /// start of the first decode step to the end of the last: sampling and whatever the caller
    /// does between tokens count too, since a greedy step may already be running on the GPU
    /// meanwhile.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_steps, self.decode_time)
    }

    fn step(&mut self) -> Result<Option<GeneratedToken>> {
        if self.generated >= self.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let prefill = self.generated == 0;
        let model = self.session.model();
        if !prefill && self.session.position() >= model.config.n_ctx {
            self.stop = Some(StopReason::Context);
            return Ok(None);
        }
        // The prompt first, then the last token generated.
        let input = if prefill {
            &self.input[..]
        } else {
            &self.history[self.history.len() - 1..]
        };
        // Greedy decoding takes the argmax on the GPU where the kernels can, and queues each
        // decode step before the host has read the one before when more will follow; other
        // sampling needs the logits. Prefill times the forward alone.
        let t0 = Instant::now();
        if !prefill {
            self.decode_start.get_or_insert(t0);
        }
        let (id, prefill_took) = if self.sampler.is_argmax() {
            let id = if prefill {
                self.session.forward_argmax(input)?
            } else {
                let more = self.generated + 1 < self.max_tokens;
                self.session.decode_argmax(input[0], more)?
            };
            (id, t0.elapsed())
        } else {
            let logits = self.session.forward(input)?;
            let took = t0.elapsed();
            (self.sampler.sample(&logits, &self.history), took)
        };
        if prefill {
            self.prefill_time = prefill_took;
        } else {
            self.decode_time = self.decode_start.map_or(Duration::ZERO, |s| s.elapsed());
            self.decode_steps += 1;
        }
        self.generated += 1;
        if model.config.eos_token_ids.contains(&id) {
            self.stop = Some(StopReason::Eos);
            return Ok(None);
        }
        self.history.push(id);
        // Returned, not yet in the cache: the next step (or a continued generation) feeds it.
        self.session.pending = Some(id);
        let text = match (&model.tokenizer, &mut self.decoder) {
            (Some(tok), Some(d)) => d.push(tok, id)?,
            _ => String::new(),
        };
        let (text, stopped) = self.stop_text.push(&text);
        if stopped {
            self.stop = Some(StopReason::Stop);
            // The generated tokens are those of the returned text: tokens that only spelled
            // the stop string are left out, as the string is.
            let shown = self.stop_text.tokens_shown();
            self.history.truncate(self.first_generated + shown);
        }
        Ok(Some(GeneratedToken { id, text }))
    }
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stop.is_some() {
            return None;
        }
        match self.step() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.stop = Some(StopReason::Error);
                Some(Err(e))
            }
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::StopText;

    #[test]
    fn stop_strings_hold_back_only_what_could_begin_one() {
        let mut s = StopText::new(vec!["\n\nUser:".into(), "END".into()]);
        assert_eq!(s.push("Hello"), ("Hello".into(), false));
        assert_eq!(s.push(" wor"), (" wor".into(), false));
        assert_eq!(s.push("ld\n"), ("ld".into(), false)); // "\n" may begin "\n\nUser:"
        assert_eq!(s.push("\nUs"), ("".into(), false));
        assert_eq!(s.push("x"), ("\n\nUsx".into(), false)); // not a stop string after all
        assert_eq!(s.push("E"), ("".into(), false));
        assert_eq!(s.push("ENDING"), ("E".into(), true)); // "EEND…": stops before "END"
        let mut t = StopText::new(vec!["ab".into()]);
        assert_eq!(t.push("xa"), ("x".into(), false));
        assert_eq!(t.take_held(), "a"); // what finish_text returns
        let mut none = StopText::default();
        assert_eq!(none.push("anything"), ("anything".into(), false));
    }

    #[test]
    fn tokens_of_a_stop_string_are_not_counted_as_shown() {
        // "Hi" " the" "re" "\n" "EN" "D": stops at "END"; the tokens of "EN" and "D" spelled
        // only the stop string.
        let mut s = StopText::new(vec!["END".into()]);
        for t in ["Hi", " the", "re", "\n", "EN"] {
            assert!(!s.push(t).1);
        }
        assert_eq!(s.push("D"), ("".into(), true));
        assert_eq!(s.tokens_shown(), 4);
        // A token partly before the stop string stays: "ab" "cEN" "D" returns "abc".
        let mut s = StopText::new(vec!["END".into()]);
        assert_eq!(s.push("ab"), ("ab".into(), false));
        assert_eq!(s.push("cEN"), ("c".into(), false));
        assert_eq!(s.push("D"), ("".into(), true));
        assert_eq!(s.tokens_shown(), 2);
        // A stop string at the very start: nothing shown, no token counted.
        let mut s = StopText::new(vec!["END".into()]);
        assert_eq!(s.push("END"), ("".into(), true));
        assert_eq!(s.tokens_shown(), 0);
    }
}
