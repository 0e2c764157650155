//! A thin wrapper over Hugging Face `tokenizers`: encode, decode, streaming decode of generated
//! tokens, and the byte length of a token (for bits per byte).

use std::path::Path;

use crate::error::{Error, Result};

/// A `tokenizer.json` tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Byte-level alphabet inverse (GPT-2 `bytes_to_unicode`): char → byte.
    byte_of: std::collections::HashMap<char, u8>,
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

    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            Error::Tokenizer(format!(
                "{} is not a valid tokenizer.json: {e}",
                path.display()
            ))
        })?;
        let byte_of = bytes_to_unicode()
            .into_iter()
            .map(|(b, c)| (c, b))
            .collect();
        Ok(Tokenizer { inner, byte_of })
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string such as `<|endoftext|>`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of UTF-8 bytes `id` stands for: exact for byte-level BPE, via decoding otherwise.
    pub fn token_bytes(&self, id: u32) -> usize {
        if let Some(s) = self.inner.id_to_token(id) {
            if s.chars().all(|c| self.byte_of.contains_key(&c)) {
                return s.chars().count();
            }
        }
        self.decode(&[id]).map(|s| s.len()).unwrap_or(0)
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of an incomplete UTF-8
/// character until the token that completes it arrives.
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Characters of `decode(ids)` already emitted.
    emitted: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder {
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds a token; returns the new complete text (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tok.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new: String = text.chars().skip(self.emitted).collect();
        self.emitted += new.chars().count();
        Ok(new)
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}
