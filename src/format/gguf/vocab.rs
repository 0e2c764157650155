//! The tokenizer a GGUF file carries in its metadata, rebuilt as a Hugging Face `tokenizers`
//! tokenizer (a `tokenizer.json` document) so that ids equal those of the checkpoint's own
//! tokenizer.
//!
//! Supported: byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, Llama 3, Qwen2,
//! SmolLM2, StarCoder, MPT / GPT-NeoX-20B), with the pre-tokenizer `tokenizer.ggml.pre`
//! names ([`PRE_SUPPORTED`]); SentencePiece BPE with byte fallback (`"llama"`: Llama 2,
//! TinyLlama, Mistral ≤ v0.3, Phi-3, Gemma), rebuilt as transformers converts a
//! `tokenizer.model` (see [`sentencepiece`]); and a file's embedded
//! `tokenizer.huggingface.json`. Control tokens become special added tokens, user-defined ones
//! plain added tokens; the padding entries the converter adds up to the vocabulary size stay
//! in the vocabulary, unreachable, as in llama.cpp.

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use super::reader::{Gguf, Value};
use crate::error::{Error, Result};

/// The `tokenizer.ggml.pre` values wgpt rebuilds.
pub(crate) const PRE_SUPPORTED: &str =
    "default, gpt-2, phi-2, mpt, llama-bpe, llama3, llama-v3, smaug-bpe, qwen2, smollm, starcoder, refact";

/// GPT-2's split (ByteLevel's own regex).
const GPT2: &str = "gpt2";
/// Llama 3's split, as its tokenizer.json writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml token types (`tokenizer.ggml.token_type`).
const UNKNOWN: i64 = 2;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(regex: &str) -> Json {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// (normalizer, pre-tokenizer, ignore_merges) of a `tokenizer.ggml.pre` name, as the
/// tokenizer.json of the models llama.cpp gives that name writes them.
fn pre_tokenizer(pre: &str) -> Option<(Json, Json, bool)> {
    let nfc = json!({"type": "NFC"});
    Some(match pre {
        "default" | "gpt-2" | GPT2 | "phi-2" => (Json::Null, byte_level(true), false),
        // GPT-NeoX-20B's tokenizer (MPT) normalizes to NFC.
        "mpt" => (nfc, byte_level(true), false),
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" => (
            Json::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]}),
            true,
        ),
        "qwen2" => (
            nfc,
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]}),
            false,
        ),
        "smollm" | "starcoder" | "refact" => (
            Json::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        _ => return None,
    })
}

fn tok_error(message: String) -> Error {
    Error::Tokenizer {
        message,
        source: None,
    }
}

fn strings<'g>(g: &'g Gguf, key: &str) -> Result<Option<Vec<&'g str>>> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    let a = v
        .as_array()
        .ok_or_else(|| tok_error(format!("GGUF metadata `{key}` is not an array")))?;
    a.iter()
        .map(|x| {
            x.as_str()
                .ok_or_else(|| tok_error(format!("GGUF metadata `{key}` holds a non-string")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// A token id from metadata `key`, if present and inside the vocabulary.
pub(crate) fn token_id(g: &Gguf, key: &str) -> Option<u32> {
    let id = g.get(key)?.as_u64()?;
    let n = g.get("tokenizer.ggml.tokens")?.as_array()?.len() as u64;
    (id < n).then_some(id as u32)
}

/// The text of token `id`.
pub(crate) fn token_text(g: &Gguf, id: u32) -> Option<String> {
    let t = g.get("tokenizer.ggml.tokens")?.as_array()?;
    t.get(id as usize)?.as_str().map(str::to_string)
}

/// The ids generation stops at: eos, and the end-of-turn / end-of-message tokens llama.cpp
/// also stops at.
pub(crate) fn stop_ids(g: &Gguf) -> Vec<u32> {
    let mut ids = Vec::new();
    for key in ["eos", "eot", "eom"] {
        if let Some(id) = token_id(g, &format!("tokenizer.ggml.{key}_token_id")) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// `tokenizer.ggml.token_type`: one integer per token.
fn token_types(v: &Value, n: usize) -> Result<Vec<i64>> {
    let a = v.as_array().unwrap_or_default();
    let t: Option<Vec<i64>> = a
        .iter()
        .map(|x| x.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .collect();
    t.filter(|t| t.len() == n).ok_or_else(|| {
        tok_error(format!(
            "GGUF metadata `tokenizer.ggml.token_type` is not {n} integers, one per token"
        ))
    })
}

/// The `tokenizer.json` document of the file's tokenizer.
pub(crate) fn tokenizer_json(g: &Gguf) -> Result<String> {
    if let Some(v) = g.get("tokenizer.huggingface.json") {
        return match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(tok_error(
                "GGUF metadata `tokenizer.huggingface.json` is not a string".into(),
            )),
        };
    }
    let model = match g.get("tokenizer.ggml.model") {
        None => {
            return Err(tok_error(
                "the GGUF file has no tokenizer (no `tokenizer.ggml.model`); put the model's tokenizer.json beside it".into(),
            ))
        }
        Some(v) => v.as_str().ok_or_else(|| {
            tok_error("GGUF metadata `tokenizer.ggml.model` is not a string".into())
        })?,
    };
    if model == "llama" {
        return sentencepiece(g);
    }
    if model != "gpt2" {
        let what = match model {
            "bert" => " (WordPiece)",
            "t5" => " (Unigram)",
            "rwkv" => " (RWKV's trie)",
            _ => "",
        };
        return Err(tok_error(format!(
            "tokenizer model `{model}`{what} in the GGUF file is not supported (supported: `gpt2`, byte-level BPE; `llama`, SentencePiece); put the model's tokenizer.json beside the .gguf file"
        )));
    }
    let pre = match g.get("tokenizer.ggml.pre") {
        None => "default",
        Some(v) => v.as_str().ok_or_else(|| {
            tok_error("GGUF metadata `tokenizer.ggml.pre` is not a string".into())
        })?,
    };
    let Some((normalizer, pre_tokenizer, ignore_merges)) = pre_tokenizer(pre) else {
        return Err(tok_error(format!(
            "pre-tokenizer `{pre}` (`tokenizer.ggml.pre`) is not supported; supported: {PRE_SUPPORTED}; or put the model's tokenizer.json beside the .gguf file"
        )));
    };
    let tokens = strings(g, "tokenizer.ggml.tokens")?
        .ok_or_else(|| tok_error("GGUF metadata `tokenizer.ggml.tokens` is missing".into()))?;
    let merges = strings(g, "tokenizer.ggml.merges")?.unwrap_or_default();
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => token_types(v, tokens.len())?,
    };
    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        if vocab.contains_key(tok) {
            log::warn!("token {id} `{tok}` repeats an earlier token; ids keep the first");
            continue;
        }
        vocab.insert(tok.to_string(), json!(id));
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == CONTROL,
            }));
        }
    }
    if g.get("tokenizer.ggml.add_space_prefix")
        .and_then(Value::as_bool)
        == Some(true)
    {
        log::warn!(
            "`tokenizer.ggml.add_space_prefix` is set; wgpt's byte-level BPE adds no prefix space"
        );
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges,
        },
    });
    Ok(doc.to_string())
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`: tokens, scores, token types)
/// as the `tokenizer.json` transformers (5.25) makes of the model's `tokenizer.model`
/// (`LlamaTokenizer`, `legacy` as Llama 2 ships it): spaces become `▁` and, unless the text
/// already starts with one, a `▁` is prepended to the text and to each part after a special
/// token (`Metaspace`, prepend scheme `always`; `tokenizer.ggml.add_space_prefix` false turns
/// that off), a BPE whose merges are every split of a piece into two pieces, ranked by the
/// merged piece's score (higher first, then longer left and right parts, as transformers
/// ranks them), and bytes without a piece fall back to `<0xNN>` tokens. So the ids are HF's
/// for the same model; where HF and SentencePiece itself differ (a text that starts with a
/// space or is only whitespace: SentencePiece prepends its `▁` anyway; special-token text
/// inside a prompt: HF and llama.cpp read it as the special token) they are HF's.
fn sentencepiece(g: &Gguf) -> Result<String> {
    let tokens = strings(g, "tokenizer.ggml.tokens")?
        .ok_or_else(|| tok_error("GGUF metadata `tokenizer.ggml.tokens` is missing".into()))?;
    let n = tokens.len();
    let scores: Vec<f64> = match g.get("tokenizer.ggml.scores") {
        None => vec![0.0; n],
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
            .filter(|s| s.len() == n)
            .ok_or_else(|| {
                tok_error(format!(
                    "GGUF metadata `tokenizer.ggml.scores` is not {n} numbers, one per token"
                ))
            })?,
    };
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
        None => vec![1; n],
        Some(v) => token_types(v, n)?,
    };
    let mut vocab = Map::with_capacity(n);
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        if index.contains_key(tok) {
            log::warn!("token {id} `{tok}` repeats an earlier token; ids keep the first");
            continue;
        }
        index.insert(tok, id);
        vocab.insert(tok.to_string(), json!(id));
        if matches!(ty, UNKNOWN | CONTROL | USER_DEFINED) {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty != USER_DEFINED,
            }));
        }
    }
    let unk = token_id(g, "tokenizer.ggml.unknown_token_id")
        .or_else(|| types.iter().position(|&t| t == UNKNOWN).map(|i| i as u32))
        .and_then(|id| tokens.get(id as usize).copied());
    let prefix = g
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let pre_tokenizer = json!({
        "type": "Metaspace", "replacement": "\u{2581}", "split": false,
        "prepend_scheme": if prefix { "always" } else { "never" },
    });
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": sentencepiece_merges(&tokens, &scores, &index),
        },
    });
    Ok(doc.to_string())
}

/// The BPE merges of a SentencePiece vocabulary, as transformers derives them from
/// `tokenizer.model`: for each piece in id order, every split into two pieces of the
/// vocabulary (ordered by their ids), then all of them sorted by the merged piece's score,
/// highest first, ties by the longer left part, then the longer right part (a stable sort, so
/// remaining ties keep that order).
fn sentencepiece_merges(tokens: &[&str], scores: &[f64], index: &HashMap<&str, usize>) -> Json {
    struct Merge {
        left: usize,
        right: usize,
        score: f64,
        chars: (usize, usize),
    }
    let mut merges = Vec::new();
    for (id, &piece) in tokens.iter().enumerate() {
        if index.get(piece) != Some(&id) {
            continue; // a repeated token: its first id stands for it
        }
        let start = merges.len();
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&left), Some(&right)) = (index.get(l), index.get(r)) {
                let chars = (l.chars().count(), r.chars().count());
                let score = scores[id];
                merges.push(Merge {
                    left,
                    right,
                    score,
                    chars,
                });
            }
        }
        merges[start..].sort_by_key(|m| (m.left, m.right));
    }
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.chars.0.cmp(&a.chars.0))
            .then(b.chars.1.cmp(&a.chars.1))
    });
    merges
        .iter()
        .map(|m| json!([tokens[m.left], tokens[m.right]]))
        .collect()
}

/// The special tokens a text is encoded with (BOS before, EOS after), as llama.cpp reads them:
/// `tokenizer.ggml.add_bos_token` / `add_eos_token` where the file has them, else its defaults
/// (a BOS for SentencePiece vocabularies and Llama 3's byte-level BPE, no EOS). `None` for a
/// file that embeds its own `tokenizer.huggingface.json` and states neither (its
/// post-processor decides).
pub(crate) fn added_specials(g: &Gguf) -> Option<(Option<u32>, Option<u32>)> {
    let flag = |key: &str| g.get(key).and_then(Value::as_bool);
    let (add_bos, add_eos) = (
        flag("tokenizer.ggml.add_bos_token"),
        flag("tokenizer.ggml.add_eos_token"),
    );
    let embedded = g.get("tokenizer.huggingface.json").is_some();
    if embedded && add_bos.is_none() && add_eos.is_none() {
        return None;
    }
    let model = g.get("tokenizer.ggml.model").and_then(Value::as_str);
    let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str);
    let bos_default = model == Some("llama")
        || matches!(pre, Some("llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe"));
    let id = |on: bool, key: &str| {
        let id = on.then(|| token_id(g, key)).flatten();
        if on && id.is_none() {
            log::warn!("the GGUF file adds `{key}` to a text but names no such token");
        }
        id
    };
    Some((
        id(
            add_bos.unwrap_or(bos_default),
            "tokenizer.ggml.bos_token_id",
        ),
        id(add_eos.unwrap_or(false), "tokenizer.ggml.eos_token_id"),
    ))
}
