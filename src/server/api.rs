//! The OpenAI request fields `wgpt serve` reads, checked into a [`Request`], and the JSON shapes
//! of its answers: errors, completions, chat completions and their streamed chunks.

use crate::{Message, SamplerConfig, SequenceParams, StopReason, TokenLogprobs};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// An error answered as OpenAI's `{"error": {message, type, param, code}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param,
            code: None,
        }
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: Some(code),
        }
    }

    /// The error object.
    pub fn body(&self) -> Value {
        let kind = match self.status.as_u16() {
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// What the two endpoints ask for.
#[derive(Debug)]
pub enum Input {
    /// `/v1/completions`: the prompt text, continued as it is.
    Text(String),
    /// `/v1/chat/completions`: messages rendered with the model's chat template.
    Chat(Vec<Message>),
}

/// A checked request.
#[derive(Debug)]
pub struct Request {
    pub input: Input,
    pub sampler: SamplerConfig,
    /// None: until the context is full.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `chat_template_kwargs` (vLLM's name): further variables for the chat template, such
    /// as Qwen3's `enable_thinking`.
    pub template_kwargs: serde_json::Map<String, Value>,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// Sequences to generate from the prompt (`n`).
    pub n: usize,
    /// Log-probabilities with this many alternatives per token (completions: `logprobs`;
    /// chat: `logprobs: true` and `top_logprobs`).
    pub logprobs: Option<usize>,
    /// `logit_bias` as (token id, bias); ids are checked against the vocabulary later.
    pub logit_bias: Vec<(u32, f32)>,
    /// `skip_special_tokens` (vLLM's name; default true).
    pub skip_special_tokens: bool,
    /// The JSON schema `response_format` asks the output to follow.
    pub json_schema: Option<Value>,
}

/// The most sequences one request may ask for (`n`).
pub const MAX_N: usize = 16;

/// Fields of OpenAI's API that wgpt does not implement: a request that uses one gets a 400
/// naming it rather than an answer that silently ignores it. `allowed` is the value that
/// means "not used".
fn unimplemented(f: &Fields) -> Result<(), ApiError> {
    let unused = |key: &str, v: &Value| match (key, v) {
        (_, Value::Null) => true,
        ("tools" | "functions", Value::Array(a)) => a.is_empty(),
        ("tool_choice" | "function_call", Value::String(s)) => s == "none",
        ("echo" | "parallel_tool_calls", Value::Bool(b)) => !b,
        ("best_of", Value::Number(n)) => n.as_u64() == Some(1),
        ("suffix", Value::String(s)) => s.is_empty(),
        _ => false,
    };
    const KEYS: [&str; 13] = [
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "echo",
        "best_of",
        "suffix",
        "audio",
        "modalities",
        "prediction",
        "guided_json",
        "guided_grammar",
    ];
    for key in KEYS {
        if let Some(v) = f.get(key) {
            if !unused(key, v) {
                return Err(ApiError {
                    code: Some("unsupported_parameter"),
                    ..ApiError::bad_request(
                        format!("`{key}` is not supported by this server"),
                        Some(key),
                    )
                });
            }
        }
    }
    Ok(())
}

/// `logit_bias`: an object of token id (as a string) to a bias in [-100, 100].
fn logit_bias(f: &Fields) -> Result<Vec<(u32, f32)>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m, Some("logit_bias"));
    match f.get("logit_bias") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let id = k
                    .parse::<u32>()
                    .map_err(|_| bad(format!("`logit_bias` key `{k}` is not a token id")))?;
                match v.as_f64() {
                    Some(b) if (-100.0..=100.0).contains(&b) => Ok((id, b as f32)),
                    _ => Err(bad(format!(
                        "`logit_bias[\"{k}\"]` must be a number from -100 to 100"
                    ))),
                }
            })
            .collect(),
        Some(_) => Err(bad(
            "`logit_bias` must be an object of token ids to numbers".into(),
        )),
    }
}

type Fields = Map<String, Value>;

fn number(
    f: &Fields,
    key: &'static str,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<Option<f64>, ApiError> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_f64().is_some_and(&ok) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::bad_request(
            format!("`{key}` must be {rule}"),
            Some(key),
        )),
    }
}

fn integer(f: &Fields, key: &'static str, min: i64) -> Result<Option<i64>, ApiError> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= min) => Ok(n.as_i64()),
        Some(_) => Err(ApiError::bad_request(
            format!("`{key}` must be an integer ≥ {min}"),
            Some(key),
        )),
    }
}

fn boolean(f: &Fields, key: &'static str) -> Result<bool, ApiError> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(
            format!("`{key}` must be true or false"),
            Some(key),
        )),
    }
}

/// A string, or an array of strings (at most `max`).
fn strings(f: &Fields, key: &'static str, max: usize) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            format!("`{key}` must be a string or an array of at most {max} strings"),
            Some(key),
        )
    };
    match f.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if a.len() <= max => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The text of a message's `content`: a string, or an array of `{"type": "text", "text"}`
/// parts (joined).
fn content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(
                |p| match (p.get("type")?.as_str()?, p.get("text")?.as_str()) {
                    ("text", Some(t)) => Some(t.to_string()),
                    _ => None,
                },
            )
            .collect(),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn messages(f: &Fields) -> Result<Vec<Message>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m, Some("messages"));
    let Some(Value::Array(list)) = f.get("messages") else {
        return Err(bad(
            "`messages` must be a non-empty array of messages".into()
        ));
    };
    if list.is_empty() {
        return Err(bad(
            "`messages` must be a non-empty array of messages".into()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str);
            let text = m.get("content").and_then(content);
            match (role, text) {
                (Some(r), Some(t)) => Ok(Message::new(r, t)),
                _ => Err(bad(format!(
                    "`messages[{i}]` needs a string `role` and a text `content`"
                ))),
            }
        })
        .collect()
}

/// A seed of its own for a request that names none: std's per-call random hasher keys, a
/// counter and the time, so no two requests of a process draw alike.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Checks the body of a completion (`chat` false) or chat completion request; `model` is the
/// id this server serves (another `model` is a 404).
pub fn parse(body: &[u8], chat: bool, model: &str) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"), None))?;
    let Value::Object(f) = v else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object",
            None,
        ));
    };
    match f.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == model => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                param: Some("model"),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "model_not_found",
                    format!("the model `{m}` does not exist; this server has `{model}`"),
                )
            })
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`model` must be a string",
                Some("model"),
            ))
        }
    }
    let input = if chat {
        Input::Chat(messages(&f)?)
    } else {
        match f.get("prompt") {
            Some(Value::String(s)) => Input::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Input::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            _ => {
                return Err(ApiError::bad_request(
                    "`prompt` must be a string (or an array of one string)",
                    Some("prompt"),
                ))
            }
        }
    };
    unimplemented(&f)?;
    let n = integer(&f, "n", 1)?.unwrap_or(1) as usize;
    if n > MAX_N {
        return Err(ApiError::bad_request(
            format!("`n` may be at most {MAX_N}"),
            Some("n"),
        ));
    }
    let top = SequenceParams::MAX_TOP_LOGPROBS as i64;
    let logprobs = if chat {
        let top_logprobs = integer(&f, "top_logprobs", 0)?;
        match (boolean(&f, "logprobs")?, top_logprobs) {
            (_, Some(k)) if k > top => {
                return Err(ApiError::bad_request(
                    format!("`top_logprobs` may be at most {top}"),
                    Some("top_logprobs"),
                ))
            }
            (true, k) => Some(k.unwrap_or(0) as usize),
            (false, Some(_)) => {
                return Err(ApiError::bad_request(
                    "`top_logprobs` needs `logprobs: true`",
                    Some("top_logprobs"),
                ))
            }
            (false, None) => None,
        }
    } else {
        match integer(&f, "logprobs", 0)? {
            Some(k) if k > top => {
                return Err(ApiError::bad_request(
                    format!("`logprobs` may be at most {top}"),
                    Some("logprobs"),
                ))
            }
            k => k.map(|k| k as usize),
        }
    };
    // OpenAI's defaults: temperature 1, top_p 1, no top-k.
    let mut sampler = SamplerConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        ..SamplerConfig::default()
    };
    let temp = number(
        &f,
        "temperature",
        |t| (0.0..=2.0).contains(&t),
        "a number from 0 to 2",
    )?;
    if let Some(t) = temp {
        sampler.temperature = t as f32;
    }
    if let Some(p) = number(&f, "top_p", |p| p > 0.0 && p <= 1.0, "a number in (0, 1]")? {
        sampler.top_p = p as f32;
    }
    if let Some(k) = integer(&f, "top_k", 0)? {
        sampler.top_k = k as usize;
    }
    let rp = number(
        &f,
        "repetition_penalty",
        |r| r > 0.0 && r.is_finite(),
        "a number > 0",
    )?;
    if let Some(r) = rp {
        sampler.repeat_penalty = r as f32;
    }
    for (key, slot) in [
        ("presence_penalty", &mut sampler.presence_penalty),
        ("frequency_penalty", &mut sampler.frequency_penalty),
    ] {
        if let Some(v) = number(
            &f,
            key,
            |v| (-2.0..=2.0).contains(&v),
            "a number from -2 to 2",
        )? {
            *slot = v as f32;
        }
    }
    match f.get("seed") {
        // OpenAI clients expect a fresh draw unless they pass a seed.
        None | Some(Value::Null) => sampler.seed = fresh_seed(),
        Some(Value::Number(n)) if n.as_i64().is_some() || n.as_u64().is_some() => {
            sampler.seed = n.as_u64().unwrap_or_else(|| n.as_i64().unwrap_or(0) as u64);
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`seed` must be an integer",
                Some("seed"),
            ))
        }
    }
    let max_tokens = match integer(&f, "max_completion_tokens", 1)? {
        Some(n) => Some(n),
        None => integer(&f, "max_tokens", 1)?,
    };
    // OpenAI's completions default to 16 tokens; chat goes on until the context is full.
    let max_tokens = max_tokens
        .map(|n| n as usize)
        .or(if chat { None } else { Some(16) });
    let include_usage = match f.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stream_options` must be an object",
                Some("stream_options"),
            ))
        }
    };
    Ok(Request {
        input,
        sampler,
        max_tokens,
        stop: strings(&f, "stop", 4)?,
        stream: boolean(&f, "stream")?,
        include_usage,
        n,
        logprobs,
        logit_bias: logit_bias(&f)?,
        json_schema: super::structured::schema_of(f.get("response_format"))
            .map_err(|m| ApiError::bad_request(m, Some("response_format")))?,
        skip_special_tokens: match f.get("skip_special_tokens") {
            None | Some(Value::Null) => true,
            _ => boolean(&f, "skip_special_tokens")?,
        },
        template_kwargs: match f.get("chat_template_kwargs") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) if chat => m.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`chat_template_kwargs` must be an object, on /v1/chat/completions",
                    Some("chat_template_kwargs"),
                ))
            }
        },
    })
}

/// OpenAI's `finish_reason` (an error never gets one: it is answered as an error).
pub fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::Context => "length",
        StopReason::Error => "error",
        _ => "stop",
    }
}

/// `usage`, with the prompt tokens the prefix cache served as OpenAI reports cached ones.
pub fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// One token's log-probabilities in OpenAI's shapes: `(text, bytes)` of a token comes from
/// `piece`.
pub struct Logprobs<'t> {
    pub piece: &'t dyn Fn(u32) -> Vec<u8>,
}

impl Logprobs<'_> {
    fn entry(&self, id: u32, logprob: f32) -> Value {
        let bytes = (self.piece)(id);
        json!({
            "token": String::from_utf8_lossy(&bytes),
            "logprob": logprob,
            "bytes": bytes,
        })
    }

    /// Chat: `{"content": [{token, logprob, bytes, top_logprobs}]}` for these tokens.
    pub fn chat(&self, tokens: &[(u32, TokenLogprobs)]) -> Value {
        let content: Vec<Value> = tokens
            .iter()
            .map(|(id, lp)| {
                let mut e = self.entry(*id, lp.logprob);
                e["top_logprobs"] = lp.top.iter().map(|&(t, l)| self.entry(t, l)).collect();
                e
            })
            .collect();
        json!({ "content": content })
    }

    /// Completions: `tokens`, `token_logprobs`, `top_logprobs` (token text → log-probability)
    /// and `text_offset` (from `offset` bytes into the generated text).
    pub fn completion(&self, tokens: &[(u32, TokenLogprobs)], mut offset: usize) -> Value {
        let (mut texts, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for (id, lp) in tokens {
            let text = String::from_utf8_lossy(&(self.piece)(*id)).into_owned();
            offsets.push(offset);
            offset += text.len();
            texts.push(text);
            lps.push(lp.logprob);
            let top: Map<String, Value> = lp
                .top
                .iter()
                .map(|&(t, l)| {
                    (
                        String::from_utf8_lossy(&(self.piece)(t)).into_owned(),
                        json!(l),
                    )
                })
                .collect();
            tops.push(top);
        }
        json!({
            "tokens": texts,
            "token_logprobs": lps,
            "top_logprobs": tops,
            "text_offset": offsets,
        })
    }
}

/// Identifies one response: `id`, `created`, `model`, and which endpoint.
pub struct Head {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub chat: bool,
}

impl Head {
    fn base(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// One choice of a whole answer.
    pub fn choice(&self, index: usize, text: &str, finish: &str, logprobs: Value) -> Value {
        if self.chat {
            json!({
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            })
        } else {
            json!({"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish})
        }
    }

    /// The whole answer of a non-streaming request.
    pub fn response(&self, choices: Vec<Value>, usage: Value) -> Value {
        let object = if self.chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        let mut v = self.base(object, Value::Array(choices));
        v["usage"] = usage;
        v
    }

    /// A streamed chunk of choice `index`: new text (and its tokens' log-probabilities), or
    /// (with `finish`) its last one. Chat's first chunk of a choice carries the role (`role`).
    pub fn chunk(
        &self,
        index: usize,
        text: Option<&str>,
        finish: Option<&str>,
        role: bool,
        logprobs: Value,
    ) -> Value {
        if self.chat {
            let mut delta = Map::new();
            if role {
                delta.insert("role".into(), "assistant".into());
            }
            if let Some(t) = text {
                delta.insert("content".into(), t.into());
            }
            self.base(
                "chat.completion.chunk",
                json!([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]),
            )
        } else {
            self.base(
                "text_completion",
                json!([{
                    "text": text.unwrap_or(""),
                    "index": index,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }]),
            )
        }
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, usage: Value) -> Value {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut v = self.base(object, json!([]));
        v["usage"] = usage;
        v
    }
}
