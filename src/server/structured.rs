//! `response_format`: JSON output enforced by constrained decoding with llguidance (the grammar
//! engine of llama.cpp, vLLM and SGLang). The model's vocabulary becomes a token trie once
//! (each token's bytes; special tokens marked so that no grammar allows them); a request's
//! JSON schema (or "any object" for `json_object`) becomes a grammar, checked when the request
//! arrives (a schema llguidance refuses is a 400); each sequence gets a matcher that masks the
//! logits before every draw and stops the sequence when the JSON is complete.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::{ConstraintFactory, Model, TokenConstraint};

/// The parser factory of a model's vocabulary (built at the first structured request).
pub struct Grammars {
    factory: OnceLock<Result<Arc<ParserFactory>, String>>,
}

impl Grammars {
    pub fn new() -> Self {
        Grammars {
            factory: OnceLock::new(),
        }
    }

    fn factory(&self, model: &Model) -> Result<Arc<ParserFactory>, String> {
        self.factory
            .get_or_init(|| build_factory(model).map(Arc::new))
            .clone()
    }

    /// The constraint for a JSON schema (`{"type": "object"}` for `json_object`), or why the
    /// schema cannot be used.
    pub fn json(
        &self,
        model: &Model,
        schema: &Value,
    ) -> Result<Arc<dyn ConstraintFactory>, String> {
        let factory = self.factory(model)?;
        let mut schema = schema.clone();
        if let Some(o) = schema.as_object_mut() {
            // Compact JSON: no unbounded runs of whitespace between tokens.
            o.entry("x-guidance")
                .or_insert(json!({"whitespace_flexible": false}));
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        // Built once here so that a bad schema is the request's error, not a sequence's.
        factory
            .create_parser(grammar.clone())
            .map_err(|e| first_line(&e.to_string()))?;
        Ok(Arc::new(JsonGrammar { factory, grammar }))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// The token trie of the model's vocabulary: every logits row a word (its bytes), special
/// tokens and padding rows marked special, the eos tokens those of the config.
fn build_factory(model: &Model) -> Result<ParserFactory, String> {
    let tok = model
        .tokenizer()
        .ok_or("structured output needs the model's tokenizer")?;
    let cfg = model.config();
    let marked = |bytes: &[u8]| [&[TokTrie::SPECIAL_TOKEN_MARKER][..], bytes].concat();
    let words: Vec<Vec<u8>> = (0..cfg.vocab_size as u32)
        .map(
            |id| match id as usize >= tok.vocab_size() || tok.is_special(id) {
                true => marked(format!("<[{id}]>").as_bytes()),
                false => tok.token_piece(id),
            },
        )
        .collect();
    let eos = cfg.eos_token_ids.first().copied().unwrap_or(0);
    let info = TokRxInfo::new(words.len() as u32, eos);
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&cfg.eos_token_ids);
    let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
    let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
    factory.set_stderr_log_level(0);
    factory.limits_mut().verbose_errors = false;
    Ok(factory)
}

/// A JSON grammar; each sequence gets its own matcher.
struct JsonGrammar {
    factory: Arc<ParserFactory>,
    grammar: TopLevelGrammar,
}

impl std::fmt::Debug for JsonGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonGrammar")
    }
}

impl ConstraintFactory for JsonGrammar {
    fn start(&self) -> Result<Box<dyn TokenConstraint>, String> {
        let parser = self
            .factory
            .create_parser(self.grammar.clone())
            .map_err(|e| first_line(&e.to_string()))?;
        Ok(Box::new(JsonMatcher(Matcher::new(Ok(parser)))))
    }
}

struct JsonMatcher(Matcher);

impl TokenConstraint for JsonMatcher {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let mask = self
            .0
            .compute_mask_or_eos()
            .map_err(|e| first_line(&e.to_string()))?;
        let words = mask.as_slice();
        for (t, l) in logits.iter_mut().enumerate() {
            if words.get(t / 32).is_none_or(|w| (w >> (t % 32)) & 1 == 0) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<bool, String> {
        self.0
            .consume_token(token)
            .map_err(|e| first_line(&e.to_string()))?;
        Ok(self.0.is_stopped())
    }
}

/// The JSON schema a `response_format` asks for: `None` for text, `{"type": "object"}` for
/// `json_object`, the schema of `json_schema`.
pub fn schema_of(format: Option<&Value>) -> Result<Option<Value>, String> {
    let Some(f) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => match f.get("json_schema").and_then(|j| j.get("schema")) {
            Some(s) if s.is_object() => Ok(Some(s.clone())),
            _ => Err("`response_format.json_schema.schema` must be a JSON schema object".into()),
        },
        _ => Err("`response_format.type` must be `text`, `json_object` or `json_schema`".into()),
    }
}
