//! A thin wrapper over Hugging Face `tokenizers`: encode (with or without the special tokens
//! the tokenizer adds to a text, such as a BOS), decode, streaming decode of generated tokens,
//! and the byte length of a token (for bits per byte).

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::gguf::reader::{self, Gguf};
use crate::format::gguf::vocab;

/// A `tokenizer.json` tokenizer (or one rebuilt from a GGUF file's metadata).
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Byte-level alphabet inverse (GPT-2 `bytes_to_unicode`): char → byte.
    byte_of: std::collections::HashMap<char, u8>,
    /// Which special tokens [`Tokenizer::encode_with_specials`] adds.
    specials: Specials,
    /// A BPE with byte fallback (SentencePiece's style: `▁` for spaces, `<0xNN>` byte tokens).
    byte_fallback: bool,
}

/// The special tokens a tokenizer adds around a text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Specials {
    /// Those of tokenizer.json's post-processor (Llama 3's `TemplateProcessing` adds
    /// `<|begin_of_text|>`; GPT-2's and Qwen2's `ByteLevel` add none).
    PostProcessor,
    /// Set explicitly: `add_bos_token` / `add_eos_token` in tokenizer_config.json (as HF's
    /// Llama and Gemma tokenizers apply them over the post-processor), or
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` in a GGUF file.
    Explicit { bos: Option<u32>, eos: Option<u32> },
}

/// A special token in `tokenizer_config.json`: a string, or an added-token object with
/// `content`.
pub(crate) fn token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// GPT-2's byte ↔ printable-char table: bytes that are printable map to themselves, the rest
/// to U+0100 onwards in order.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut out = Vec::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        out.push((b as u8, char::from_u32(c).unwrap_or('?')));
    }
    out
}

impl Tokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes, path)
    }

    /// Parses the bytes of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, Path::new("tokenizer.json"))
    }

    /// The tokenizer in a GGUF file's metadata (byte-level BPE `gpt2` or SentencePiece
    /// `llama`), with the ids and special tokens Hugging Face's tokenizer of the same model
    /// gives (the tensors are not read).
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_gguf_metadata(&reader::parse(path, &bytes)?, path)
    }

    /// The tokenizer a parsed GGUF file's metadata describes, rebuilt as a `tokenizer.json`
    /// document (`crate::format::gguf::vocab`), with the BOS / EOS the file says a text gets;
    /// `path` is the GGUF file, for messages.
    pub(crate) fn from_gguf_metadata(g: &Gguf, path: &Path) -> Result<Self> {
        let json = vocab::tokenizer_json(g).map_err(|e| match e {
            Error::Tokenizer { message, source } => Error::Tokenizer {
                message: format!("{}: {message}", path.display()),
                source,
            },
            other => other,
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| {
            Error::tokenizer(
                format!("the tokenizer in {}'s metadata is invalid", path.display()),
                e,
            )
        })?;
        let mut tok = Self::wrap(inner);
        if let Some((bos, eos)) = vocab::added_specials(g) {
            tok.set_specials(bos, eos);
        }
        Ok(tok)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            Error::tokenizer(
                format!("{} is not a valid tokenizer.json", path.display()),
                e,
            )
        })?;
        Ok(Self::wrap(inner))
    }

    fn wrap(inner: tokenizers::Tokenizer) -> Self {
        let byte_of = bytes_to_unicode()
            .into_iter()
            .map(|(b, c)| (c, b))
            .collect();
        let byte_fallback = matches!(
            inner.get_model(),
            tokenizers::models::ModelWrapper::BPE(b) if b.byte_fallback
        );
        Tokenizer {
            inner,
            byte_of,
            specials: Specials::PostProcessor,
            byte_fallback,
        }
    }

    /// Reads a model directory's `tokenizer.json` and, where present, the special-token rule of
    /// its `tokenizer_config.json` (`add_bos_token` / `add_eos_token` with `bos_token` /
    /// `eos_token`), which HF's Llama-family tokenizers apply over the post-processor.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut tok = Self::from_file(&dir.join("tokenizer.json"))?;
        let path = dir.join("tokenizer_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tok),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let flag = |key: &str| v.get(key).and_then(serde_json::Value::as_bool);
        let (add_bos, add_eos) = (flag("add_bos_token"), flag("add_eos_token"));
        if add_bos.is_none() && add_eos.is_none() {
            return Ok(tok);
        }
        // Each flag that is absent keeps what the post-processor does.
        let (pre, post) = tok.added_around();
        let id = |on: Option<bool>, key: &str, current: Option<u32>| match on {
            None => current,
            Some(false) => None,
            Some(true) => {
                let name = token_text(v.get(key));
                let id = name.as_deref().and_then(|n| tok.token_to_id(n));
                if id.is_none() {
                    log::warn!(
                        "{}: `add_{key}` is true but `{key}` ({name:?}) is not a token of tokenizer.json; none is added",
                        path.display()
                    );
                }
                id
            }
        };
        let bos = id(add_bos, "bos_token", pre.first().copied());
        let eos = id(add_eos, "eos_token", post.last().copied());
        tok.specials = Specials::Explicit { bos, eos };
        Ok(tok)
    }

    /// Sets the special tokens [`Tokenizer::encode_with_specials`] adds: `bos` before the
    /// text, `eos` after it (GGUF files state them in their metadata).
    pub(crate) fn set_specials(&mut self, bos: Option<u32>, eos: Option<u32>) {
        self.specials = Specials::Explicit { bos, eos };
    }

    /// Token ids of `text` alone: no special tokens added (what a chat template's rendered
    /// text is encoded with, since the template writes its own BOS; HF's
    /// `encode(text, add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::tokenizer("cannot encode the text", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with the special tokens the tokenizer adds to a text, as HF's
    /// `tokenizer(text)` and llama.cpp do: a BOS for Llama 2 / 3, Mistral, TinyLlama and Gemma
    /// tokenizers; nothing for GPT-2 and Qwen2. What `generate`, `perplexity` and
    /// `/v1/completions` feed the model.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        match self.specials {
            Specials::PostProcessor => {
                let enc = self
                    .inner
                    .encode(text, true)
                    .map_err(|e| Error::tokenizer("cannot encode the text", e))?;
                Ok(enc.get_ids().to_vec())
            }
            Specials::Explicit { bos, eos } => {
                let mut ids: Vec<u32> = bos.into_iter().collect();
                ids.extend(self.encode(text)?);
                ids.extend(eos);
                Ok(ids)
            }
        }
    }

    /// The BOS token [`Tokenizer::encode_with_specials`] puts before a text, if it adds one
    /// (perplexity starts each window with it).
    pub fn bos_token_id(&self) -> Option<u32> {
        match self.specials {
            Specials::PostProcessor => self.added_around().0.first().copied(),
            Specials::Explicit { bos, .. } => bos,
        }
    }

    /// The tokens the post-processor adds before and after a text: found by encoding a probe
    /// with and without them.
    fn added_around(&self) -> (Vec<u32>, Vec<u32>) {
        let probe = "a";
        let ids = |special| {
            self.inner
                .encode(probe, special)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        };
        let (plain, full) = (ids(false), ids(true));
        if plain.is_empty() {
            return (Vec::new(), Vec::new());
        }
        match full
            .windows(plain.len())
            .position(|w| w == plain.as_slice())
        {
            Some(i) => (full[..i].to_vec(), full[i + plain.len()..].to_vec()),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::tokenizer("cannot decode the token ids", e))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is a special token (an added token marked special, such as
    /// `<|im_start|>` or `</s>`), which outputs leave out unless asked to keep them.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .id_to_token(id)
            .is_some_and(|t| self.inner.get_added_vocabulary().is_special_token(&t))
    }

    /// The id of a token string such as `<|endoftext|>`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of UTF-8 bytes `id` stands for: exact for byte-level BPE and for SentencePiece
    /// pieces (`<0xNN>` is one byte, `▁` a space), via decoding otherwise.
    pub fn token_bytes(&self, id: u32) -> usize {
        self.token_piece(id).len()
    }

    /// The bytes token `id` stands for on its own (a byte-level BPE token's bytes, a
    /// SentencePiece piece with `▁` as a space or its `<0xNN>` byte, an added token's text; a
    /// SentencePiece special token's is empty): what OpenAI's log-probabilities report as a
    /// token's `bytes`, which may be part of a character.
    pub fn token_piece(&self, id: u32) -> Vec<u8> {
        if let Some(s) = self.inner.id_to_token(id) {
            if self.byte_fallback {
                let is_byte = s.len() == 6
                    && s.starts_with("<0x")
                    && s.ends_with('>')
                    && u8::from_str_radix(&s[3..5], 16).is_ok();
                if is_byte {
                    return vec![u8::from_str_radix(&s[3..5], 16).unwrap_or(0)];
                }
                if self.inner.get_added_vocabulary().is_special_token(&s) {
                    return Vec::new();
                }
                return s.replace('\u{2581}', " ").into_bytes();
            }
            if let Some(bytes) = s.chars().map(|c| self.byte_of.get(&c).copied()).collect() {
                return bytes;
            }
        }
        self.decode(&[id])
            .map(String::into_bytes)
            .unwrap_or_default()
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of an incomplete UTF-8
/// character until the token that completes it arrives.
///
/// Linear in the length of the stream (the scheme of the `tokenizers` crate's `DecodeStream`):
/// each step decodes only a short window, the tokens of the piece emitted last (as context, so
/// that decoders that treat a sequence's first token specially see it in place) and the
/// tokens not emitted yet, not the whole output again.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    /// The window: context tokens, then the tokens whose text is not emitted yet.
    ids: Vec<u32>,
    /// The text of the window's context tokens (already emitted).
    prefix: String,
    /// How many of `ids` are context.
    prefix_len: usize,
}

impl StreamDecoder {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream that continues after `context` (e.g. the prompt's last token): their text is
    /// not returned, and the first pushed token is decoded as it reads after them.
    pub fn after(tok: &Tokenizer, context: &[u32]) -> Result<Self> {
        let mut d = Self::new();
        for &id in context {
            d.push(tok, id)?;
        }
        Ok(d)
    }

    /// Adds a token; returns the new complete text (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tok.decode(&self.ids)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = match text.strip_prefix(self.prefix.as_str()) {
            Some(new) => new.to_string(),
            // The new tokens changed how the emitted ones decode: byte-fallback tokens that
            // form no valid UTF-8 with their neighbours (SentencePiece decodes such a run as
            // one U+FFFD per byte). Text already emitted stays; the new tokens' own text
            // follows it.
            None => {
                let own = tok.decode(&self.ids[self.prefix_len..])?;
                log::debug!("streaming decode: token {id} changed text already emitted ({:?} became {text:?}); emitting {own:?}", self.prefix);
                own
            }
        };
        // The tokens just emitted become the context of the next piece.
        self.ids.drain(..self.prefix_len);
        self.prefix_len = self.ids.len();
        self.prefix = tok.decode(&self.ids)?;
        Ok(new)
    }

    /// Tokens in the window (context plus pending); stays small, which keeps decoding linear.
    #[cfg(test)]
    fn window(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gpt2-tokenizer/tokenizer.json"
        );
        Tokenizer::from_file(Path::new(path)).unwrap()
    }

    #[test]
    fn streaming_decode_is_linear_and_exact() {
        let tok = gpt2();
        let line =
            "ROMEO: But soft, what light through yonder window breaks? — naïve café 日本語 🤖\n";
        let text = line.repeat(60);
        let ids = tok.encode(&text).unwrap();
        assert!(ids.len() > 1500);
        let mut d = StreamDecoder::new();
        let mut out = String::new();
        let mut widest = 0;
        for &id in &ids {
            let piece = d.push(&tok, id).unwrap();
            assert!(!piece.contains('\u{FFFD}'));
            out.push_str(&piece);
            widest = widest.max(d.window());
        }
        assert_eq!(out, text);
        // Each step decodes a window of a few tokens (a multi-byte character spans up to 4
        // byte tokens), never the whole output.
        assert!(widest <= 8, "window grew to {widest} tokens");
    }

    #[test]
    fn a_stream_after_context_returns_only_the_new_text() {
        let tok = gpt2();
        let ids = tok.encode("Hello world, again").unwrap();
        let mut d = StreamDecoder::after(&tok, &ids[..2]).unwrap();
        let rest: String = ids[2..].iter().map(|&i| d.push(&tok, i).unwrap()).collect();
        assert_eq!(rest, ", again");
    }
}
