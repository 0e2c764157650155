//! The Hugging Face GPT-2 `config.json`, validated before anything is allocated.

use std::path::Path;

use serde_json::Value;

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

/// The fields of a `config.json`, read one by one so that an error names its field.
/// `null` counts as absent, as Hugging Face writes it.
struct Fields(serde_json::Map<String, Value>);

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn typed<'a, T>(
        &'a self,
        name: &str,
        what: &str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        self.get(name)
            .map(|v| f(v).ok_or_else(|| bad(format!("`{name}` = {v} is not {what}"))))
            .transpose()
    }

    fn uint(&self, name: &str) -> Result<Option<u64>> {
        self.typed(name, "a whole number", Value::as_u64)
    }

    fn string(&self, name: &str) -> Result<Option<&str>> {
        self.typed(name, "a string", Value::as_str)
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>> {
        self.typed(name, "true or false", Value::as_bool)
    }
}

/// Largest sizes accepted, far above any GPT-2-family model; they keep arithmetic in range
/// and make an absurd config fail before anything is allocated.
const MAX_EMBD: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_POSITIONS: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;
const MAX_INNER: usize = 4 * MAX_EMBD;

fn bad(message: String) -> Error {
    Error::Config {
        path: "config.json".into(),
        message,
    }
}

fn in_range(name: &str, v: u64, max: usize) -> Result<usize> {
    match usize::try_from(v) {
        Ok(u) if (1..=max).contains(&u) => Ok(u),
        _ => Err(bad(format!("`{name}` = {v} is out of range 1..={max}"))),
    }
}

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
        let raw = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Fields(map),
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => return Err(bad(format!("not valid JSON: {e}"))),
        };
        if let Some(mt) = raw.string("model_type")? {
            if mt != "gpt2" {
                return Err(Error::Unsupported(format!(
                    "model_type `{mt}`; supported: gpt2 (GPT-2 family)"
                )));
            }
        }
        let archs = raw.typed("architectures", "a list", Value::as_array)?;
        for a in archs.into_iter().flatten() {
            let a = a.as_str().map_or_else(|| a.to_string(), str::to_string);
            if !a.starts_with("GPT2") {
                return Err(Error::Unsupported(format!(
                    "architecture `{a}`; supported: GPT2LMHeadModel (GPT-2 family)"
                )));
            }
        }
        if raw.boolean("scale_attn_by_inverse_layer_idx")? == Some(true) {
            return Err(Error::Unsupported(
                "scale_attn_by_inverse_layer_idx = true".into(),
            ));
        }
        if raw.boolean("reorder_and_upcast_attn")? == Some(true) {
            log::debug!("reorder_and_upcast_attn is implied: attention is computed in f32");
        }
        let field = |name: &str, max: usize| -> Result<usize> {
            let v = raw.uint(name)?;
            in_range(
                name,
                v.ok_or_else(|| bad(format!("missing field `{name}`")))?,
                max,
            )
        };
        let n_embd = field("n_embd", MAX_EMBD)?;
        let n_inner = match raw.uint("n_inner")? {
            None => 4 * n_embd,
            Some(v) => in_range("n_inner", v, MAX_INNER)?,
        };
        let eos_token_id = match raw.get("eos_token_id") {
            None => None,
            Some(v) => {
                // A list of ids (newer configs) stops at its first.
                let first = match v {
                    Value::Array(a) => a.first(),
                    other => Some(other),
                };
                let id = first
                    .and_then(Value::as_u64)
                    .and_then(|x| u32::try_from(x).ok());
                Some(id.ok_or_else(|| bad(format!("`eos_token_id` = {v} is not a token id")))?)
            }
        };
        let eps = raw.typed("layer_norm_epsilon", "a number", Value::as_f64)?;
        let config = Config {
            n_embd,
            n_layer: field("n_layer", MAX_LAYERS)?,
            n_head: field("n_head", MAX_EMBD)?,
            n_positions: field("n_positions", MAX_POSITIONS)?,
            n_inner,
            vocab_size: field("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: eps.unwrap_or(1e-5) as f32,
            activation: Activation::parse(
                raw.string("activation_function")?.unwrap_or("gelu_new"),
            )?,
            tie_word_embeddings: raw.boolean("tie_word_embeddings")?.unwrap_or(true),
            eos_token_id,
            scale_attn_weights: raw.boolean("scale_attn_weights")?.unwrap_or(true),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that every size is in range and the sizes agree with each other. Every model
    /// constructor calls this, so a `Config` built by hand gets the same checks as a file.
    pub fn validate(&self) -> Result<()> {
        in_range("n_embd", self.n_embd as u64, MAX_EMBD)?;
        in_range("n_layer", self.n_layer as u64, MAX_LAYERS)?;
        in_range("n_head", self.n_head as u64, MAX_EMBD)?;
        in_range("n_positions", self.n_positions as u64, MAX_POSITIONS)?;
        in_range("n_inner", self.n_inner as u64, MAX_INNER)?;
        in_range("vocab_size", self.vocab_size as u64, MAX_VOCAB)?;
        let (n_embd, n_head) = (self.n_embd, self.n_head);
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
        if self.n_inner % 4 != 0 {
            // The matmul kernels load their input rows as vec4 (shaders/matmul.wgsl).
            return Err(Error::Unsupported(format!(
                "n_inner = {}; wgpt needs a multiple of 4",
                self.n_inner
            )));
        }
        let eps = self.layer_norm_epsilon;
        if !(eps > 0.0 && eps < 1.0) {
            return Err(bad(format!(
                "`layer_norm_epsilon` = {eps} is out of range (0, 1)"
            )));
        }
        Ok(())
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        // `max(1)`: a hand-built config with n_head 0 fails `validate`, not here.
        self.n_embd / self.n_head.max(1)
    }

    /// Number of parameters (tied head counted once); `u64::MAX` if it overflows, which only
    /// a config that fails [`Config::validate`] can do.
    pub fn n_params(&self) -> u64 {
        let count = || -> Option<u64> {
            let [c, f, v, p, l] = [
                self.n_embd,
                self.n_inner,
                self.vocab_size,
                self.n_positions,
                self.n_layer,
            ]
            .map(|x| x as u64);
            // Per layer: 4c² (c_attn, attn c_proj) + 2cf (MLP) + f + 9c (biases, LayerNorms).
            let layer = c
                .checked_mul(c)?
                .checked_mul(4)?
                .checked_add(c.checked_mul(f)?.checked_mul(2)?)?
                .checked_add(f)?
                .checked_add(c.checked_mul(9)?)?;
            let heads = if self.tie_word_embeddings { 1 } else { 2 };
            v.checked_mul(c)?
                .checked_mul(heads)?
                .checked_add(p.checked_mul(c)?)?
                .checked_add(l.checked_mul(layer)?)?
                .checked_add(c.checked_mul(2)?)
        };
        count().unwrap_or(u64::MAX)
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
