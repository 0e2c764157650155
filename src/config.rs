//! The Hugging Face GPT-2 `config.json`, validated before anything is allocated.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Activation of the feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact erf form.
    GeluErf,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The names accepted in `activation_function`.
    pub const SUPPORTED: &'static str = "gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu";

    fn parse(s: &str) -> Result<Self> {
        match s {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            "relu" => Ok(Activation::Relu),
            other => Err(Error::Unsupported(format!(
                "activation_function `{other}`; supported: {}",
                Self::SUPPORTED
            ))),
        }
    }

    /// The code the matmul epilogue uses (`ACT_*` in `shaders/activations.wgsl`).
    pub(crate) fn shader_code(self) -> u32 {
        match self {
            Activation::GeluTanh => 1,
            Activation::GeluErf => 2,
            Activation::Relu => 3,
        }
    }
}

/// A GPT-2-family model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    /// Hidden size of the feed-forward layer (`n_inner`, or 4·n_embd when null).
    pub n_inner: usize,
    pub vocab_size: usize,
    pub layer_norm_epsilon: f32,
    pub activation: Activation,
    pub tie_word_embeddings: bool,
    pub eos_token_id: Option<u32>,
    /// Divide attention scores by √head_dim (`scale_attn_weights`).
    pub scale_attn_weights: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    n_embd: Option<u64>,
    n_layer: Option<u64>,
    n_head: Option<u64>,
    n_positions: Option<u64>,
    n_inner: Option<u64>,
    vocab_size: Option<u64>,
    layer_norm_epsilon: Option<f64>,
    activation_function: Option<String>,
    tie_word_embeddings: Option<bool>,
    eos_token_id: Option<serde_json::Value>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    reorder_and_upcast_attn: Option<bool>,
}

/// Largest sizes accepted, far above any GPT-2-family model; they keep arithmetic in range
/// and make an absurd config fail before anything is allocated.
const MAX_EMBD: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_POSITIONS: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |message: String| Error::Config {
            path: "config.json".into(),
            message,
        };
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if let Some(mt) = &raw.model_type {
            if mt != "gpt2" {
                return Err(Error::Unsupported(format!(
                    "model_type `{mt}`; supported: gpt2 (GPT-2 family)"
                )));
            }
        }
        if let Some(archs) = &raw.architectures {
            if let Some(a) = archs.iter().find(|a| !a.starts_with("GPT2")) {
                return Err(Error::Unsupported(format!(
                    "architecture `{a}`; supported: GPT2LMHeadModel (GPT-2 family)"
                )));
            }
        }
        if raw.scale_attn_by_inverse_layer_idx == Some(true) {
            return Err(Error::Unsupported(
                "scale_attn_by_inverse_layer_idx = true".into(),
            ));
        }
        if raw.reorder_and_upcast_attn == Some(true) {
            log::debug!("reorder_and_upcast_attn is implied: attention is computed in f32");
        }
        let field = |v: Option<u64>, name: &str, max: usize| -> Result<usize> {
            let v = v.ok_or_else(|| bad(format!("missing field `{name}`")))?;
            if v == 0 || v > max as u64 {
                return Err(bad(format!("`{name}` = {v} is out of range 1..={max}")));
            }
            Ok(v as usize)
        };
        let n_embd = field(raw.n_embd, "n_embd", MAX_EMBD)?;
        let n_layer = field(raw.n_layer, "n_layer", MAX_LAYERS)?;
        let n_head = field(raw.n_head, "n_head", MAX_EMBD)?;
        let n_positions = field(raw.n_positions, "n_positions", MAX_POSITIONS)?;
        let vocab_size = field(raw.vocab_size, "vocab_size", MAX_VOCAB)?;
        let n_inner = match raw.n_inner {
            None => 4 * n_embd,
            Some(_) => field(raw.n_inner, "n_inner", 4 * MAX_EMBD)?,
        };
        if n_embd % n_head != 0 {
            return Err(bad(format!(
                "n_head = {n_head} does not divide n_embd = {n_embd}"
            )));
        }
        let head_dim = n_embd / n_head;
        if head_dim % 4 != 0 || head_dim > 256 {
            return Err(Error::Unsupported(format!(
                "head_dim = {head_dim} (n_embd / n_head); wgpt needs a multiple of 4 up to 256"
            )));
        }
        let eps = raw.layer_norm_epsilon.unwrap_or(1e-5);
        if !(eps > 0.0 && eps < 1.0) {
            return Err(bad(format!(
                "`layer_norm_epsilon` = {eps} is out of range (0, 1)"
            )));
        }
        let activation =
            Activation::parse(raw.activation_function.as_deref().unwrap_or("gelu_new"))?;
        let eos_token_id = match raw.eos_token_id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|v| v.as_u64()).map(|v| v as u32)
            }
            Some(other) => return Err(bad(format!("`eos_token_id` = {other} is not a token id"))),
        };
        Ok(Config {
            n_embd,
            n_layer,
            n_head,
            n_positions,
            n_inner,
            vocab_size,
            layer_norm_epsilon: eps as f32,
            activation,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(true),
            eos_token_id,
            scale_attn_weights: raw.scale_attn_weights.unwrap_or(true),
        })
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Number of parameters (tied head counted once).
    pub fn n_params(&self) -> usize {
        let (c, f) = (self.n_embd, self.n_inner);
        let layer = 2 * c + c * 3 * c + 3 * c + c * c + c + 2 * c + c * f + f + f * c + c;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * c
        };
        self.vocab_size * c + self.n_positions * c + self.n_layer * layer + 2 * c + head
    }

    /// The shapes of the real GPT-2 sizes, for `--synthetic` models and tests.
    pub fn gpt2_preset(name: &str) -> Option<Self> {
        let (n_embd, n_layer, n_head) = match name {
            "gpt2" => (768, 12, 12),
            "gpt2-medium" => (1024, 24, 16),
            "gpt2-large" => (1280, 36, 20),
            "gpt2-xl" => (1600, 48, 25),
            _ => return None,
        };
        Some(Config {
            n_embd,
            n_layer,
            n_head,
            n_positions: 1024,
            n_inner: 4 * n_embd,
            vocab_size: 50257,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            eos_token_id: Some(50256),
            scale_attn_weights: true,
        })
    }
}
