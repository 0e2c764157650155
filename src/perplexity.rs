//! Perplexity of a text: consecutive non-overlapping windows of `context` tokens; every token
//! after the first of a window is scored given the window before it. Where the model's
//! tokenizer adds a BOS to a text (Llama, Mistral, Gemma), each window is that BOS and the
//! next `context − 1` tokens of the text, every one of which is scored (llama.cpp's
//! `llama-perplexity` starts its windows with the BOS too).

use crate::error::{Error, Result};
use crate::session::Session;

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Perplexity {
    /// exp(mean NLL).
    pub perplexity: f64,
    /// Mean negative log-likelihood per scored token, in nats.
    pub nll_mean: f64,
    /// Tokens scored (every token of a window but its first; every text token where windows
    /// start with a BOS).
    pub tokens_scored: usize,
    /// Total NLL in bits over the UTF-8 bytes of the scored tokens.
    pub bits_per_byte: f64,
    /// Windows scored.
    pub windows: usize,
}

/// Scores `tokens` (the text's, without special tokens: [`crate::Tokenizer::encode`]) in
/// windows of `context` (the first `max_windows` windows when given), each starting with the
/// BOS where the model's tokenizer adds one ([`crate::Tokenizer::bos_token_id`]).
/// `token_bytes(id)` gives a token's byte length for bits per byte.
pub fn perplexity(
    session: &mut Session<'_>,
    tokens: &[u32],
    context: usize,
    max_windows: Option<usize>,
    token_bytes: impl Fn(u32) -> usize,
) -> Result<Perplexity> {
    perplexity_with_progress(
        session,
        tokens,
        context,
        max_windows,
        token_bytes,
        |_, _| {},
    )
}

/// [`perplexity`], calling `progress(windows done, windows in all)` before the first window
/// and after each.
pub fn perplexity_with_progress(
    session: &mut Session<'_>,
    tokens: &[u32],
    context: usize,
    max_windows: Option<usize>,
    token_bytes: impl Fn(u32) -> usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    let n_ctx = session.model().config().n_ctx;
    if context < 2 || context > n_ctx {
        return Err(Error::InvalidInput(format!(
            "context must be in 2..={n_ctx}, got {context}"
        )));
    }
    if max_windows == Some(0) {
        return Err(Error::InvalidInput(
            "the number of windows to score must be at least 1".into(),
        ));
    }
    let v = session.model().config().vocab_size;
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= v) {
        return Err(Error::InvalidInput(format!(
            "token id {t} is outside the vocabulary of {v}"
        )));
    }
    let bos = session.model().tokenizer().and_then(|t| t.bos_token_id());
    let prefix: &[u32] = bos.as_slice();
    // Text tokens per window: the BOS takes one position.
    let chunk = context - prefix.len();
    let mut nll = 0f64;
    let mut scored = 0usize;
    let mut bytes = 0usize;
    let mut windows = 0usize;
    let total = tokens
        .chunks(chunk)
        .filter(|w| prefix.len() + w.len() >= 2)
        .count()
        .min(max_windows.unwrap_or(usize::MAX));
    progress(0, total);
    for text in tokens.chunks(chunk) {
        if max_windows.is_some_and(|m| windows >= m) || prefix.len() + text.len() < 2 {
            break;
        }
        session.reset();
        let window: Vec<u32> = prefix.iter().chain(text).copied().collect();
        let inputs = &window[..window.len() - 1];
        session.forward_each(inputs, |i, logits| {
            // In range: `i` indexes `inputs`, one shorter than `window`, and every id was
            // checked against the vocabulary (the length of `logits`) above.
            let target = window[i + 1];
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
            nll += max + sum.ln() - logits[target as usize] as f64;
            scored += 1;
            bytes += token_bytes(target);
            Ok(())
        })?;
        windows += 1;
        progress(windows, total);
    }
    if scored == 0 {
        return Err(Error::InvalidInput(format!(
            "nothing to score: the text has {} token(s); perplexity needs at least 2",
            tokens.len()
        )));
    }
    let nll_mean = nll / scored as f64;
    Ok(Perplexity {
        perplexity: nll_mean.exp(),
        nll_mean,
        tokens_scored: scored,
        bits_per_byte: if bytes == 0 {
            f64::NAN
        } else {
            nll / std::f64::consts::LN_2 / bytes as f64
        },
        windows,
    })
}
