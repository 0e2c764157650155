//! A model's `config.json`, read by its family's module and validated before anything is allocated.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::family::Family;

/// Activation of the feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact erf form.
    GeluErf,
    /// `relu`.
    Relu,
    /// `silu` / `swish`: x·sigmoid(x) (gated in the Llama family's feed-forward).
    Silu,
}

impl Activation {
    /// The names accepted in `activation_function`.
    pub const SUPPORTED: &'static str = "gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu, silu";

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
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
            Activation::Silu => 4,
        }
    }
}

/// The normalization of every norm in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NormKind {
    /// LayerNorm: centred, scaled by gamma, shifted by beta.
    LayerNorm,
    /// RMSNorm: scaled by the root mean square and a weight, no centring, no bias.
    RmsNorm,
}

/// The feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlpKind {
    /// `W2·act(W1·x + b1) + b2`.
    Plain,
    /// `down(act(gate(x)) · up(x))` (the Llama family's SwiGLU).
    Gated,
}

/// Rotary position embeddings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rope {
    /// The base of the frequencies (`rope_theta`, `rotary_emb_base`).
    pub theta: f64,
    /// How the frequencies are rescaled for longer contexts.
    pub scaling: RopeScaling,
    /// Dimensions of each head that are rotated (all of them, or `rotary_pct · head_dim`),
    /// even.
    pub dims: usize,
}

/// How rotary frequencies are rescaled for longer contexts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RopeScaling {
    /// None (`rope_type: default`).
    None,
    /// `linear`: every frequency divided by `factor` (positions interpolated).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// `llama3`: low frequencies divided by `factor`, high ones kept, a smooth blend between
    /// (Llama 3.1 / 3.2).
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are divided.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
    /// Frequency `i` divided by `factors[i]` (one per rotated pair, `head_dim / 2`): how GGUF
    /// files carry Llama 3's rule (the `rope_freqs` tensor llama.cpp's converter computes).
    Factors(Vec<f64>),
}

impl Rope {
    /// Rotary dimensions that fit the head, a base above 1, a scaling in range.
    fn validate(&self, head_dim: usize) -> Result<()> {
        let (dims, theta) = (self.dims, self.theta);
        if dims % 2 != 0 || dims > head_dim || dims == 0 {
            return Err(Error::Unsupported(format!(
                "{dims} rotary dimensions (rotary_pct · head_dim {head_dim}); wgpt needs an even number up to head_dim"
            )));
        }
        if !(theta.is_finite() && theta > 1.0) {
            return Err(bad(format!(
                "the rotary base (`rope_theta`, `rotary_emb_base`) = {theta} is not a number above 1"
            )));
        }
        let ok = match self.scaling {
            RopeScaling::None => true,
            RopeScaling::Linear { factor } => factor.is_finite() && factor > 0.0,
            RopeScaling::Factors(ref f) => {
                f.len() == dims / 2 && f.iter().all(|v| v.is_finite() && *v > 0.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                [
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                ]
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
                    && high_freq_factor > low_freq_factor
            }
        };
        if !ok {
            return Err(bad(format!(
                "`rope_scaling` = {:?} is out of range",
                self.scaling
            )));
        }
        Ok(())
    }
}

/// A model's hyper-parameters, in GPT-2's names whatever the family calls them
/// (`hidden_size` is `n_embd`, `max_position_embeddings` is `n_positions`, …).
/// To build one by hand, start from [`Config::preset`] or [`Config::from_json`] and change its
/// fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The family and its own options.
    pub(crate) family: Family,
    /// Hidden size C.
    pub n_embd: usize,
    /// Decoder layers.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention: fewer than `n_head`, dividing it); `None`
    /// is `n_head`. See [`Config::n_kv_head`].
    pub kv_heads: Option<usize>,
    /// Dimension of each head where the config states one (`head_dim`); `None` is
    /// `n_embd / n_head`. See [`Config::head_dim`].
    pub head_size: Option<usize>,
    /// The norms: LayerNorm or RMSNorm.
    pub norm: NormKind,
    /// The feed-forward layer: plain or gated.
    pub mlp: MlpKind,
    /// Width of the token embedding where it differs from `n_embd` (OPT's
    /// `word_embed_proj_dim`, projected in and out).
    pub embedding_width: Option<usize>,
    /// Rotary positions, for families that use them (learned positions otherwise).
    pub rope: Option<Rope>,
    /// The model's context: positions it was trained on (`max_position_embeddings`,
    /// `n_positions`, GGUF `context_length`), as its config states it.
    pub n_positions: usize,
    /// The context in use: positions the KV cache and the rotary tables hold, at most
    /// `n_positions`. A parsed config starts at `min(n_positions, DEFAULT_CONTEXT)`;
    /// `LoadOptions::ctx` (the CLI's `--ctx`) sets it when a model is loaded.
    pub n_ctx: usize,
    /// Hidden size of the feed-forward layer (`n_inner`, or 4·n_embd when null).
    pub n_inner: usize,
    /// Vocabulary size V (rows of the token embedding).
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f32,
    /// Feed-forward activation.
    pub activation: Activation,
    /// The LM head is the token embedding.
    pub tie_word_embeddings: bool,
    /// End-of-text tokens (`eos_token_id`, one id or a list, plus those of
    /// `generation_config.json`); generation stops at any of them.
    pub eos_token_ids: Vec<u32>,
    /// Divide attention scores by √head_dim (`scale_attn_weights`).
    pub scale_attn_weights: bool,
    /// The attention score scale where it is not 1/√head_dim (Gemma's
    /// `query_pre_attn_scalar`^−½); overrides `scale_attn_weights`.
    pub attn_scale: Option<f32>,
    /// Attention scores become cap·tanh(score / cap) (Gemma 2's `attn_logit_softcapping`).
    pub attn_softcap: Option<f32>,
    /// Per layer, the sliding window of a local-attention layer (its queries see the last
    /// `w` positions, their own included); `None` or an empty list: every position before.
    pub windows: Vec<Option<usize>>,
}

/// The fields of a `config.json`, read one by one so that an error names its field.
/// `null` counts as absent, as Hugging Face writes it.
pub(crate) struct Fields(pub(crate) serde_json::Map<String, Value>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&Value> {
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

    pub fn uint(&self, name: &str) -> Result<Option<u64>> {
        self.typed(name, "a whole number", Value::as_u64)
    }

    pub fn string(&self, name: &str) -> Result<Option<&str>> {
        self.typed(name, "a string", Value::as_str)
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>> {
        self.typed(name, "true or false", Value::as_bool)
    }

    pub fn number(&self, name: &str) -> Result<Option<f64>> {
        self.typed(name, "a number", Value::as_f64)
    }

    /// A nested object (e.g. `rope_parameters`), as fields of its own.
    pub fn object(&self, name: &str) -> Result<Option<Fields>> {
        Ok(self
            .typed(name, "an object", Value::as_object)?
            .map(|m| Fields(m.clone())))
    }

    /// A required size in 1..=max.
    pub fn size(&self, name: &str, max: usize) -> Result<usize> {
        let v = self.uint(name)?;
        in_range(
            name,
            v.ok_or_else(|| bad(format!("missing field `{name}`")))?,
            max,
        )
    }

    /// An optional size in 1..=max.
    pub fn size_or(&self, name: &str, max: usize, default: usize) -> Result<usize> {
        match self.uint(name)? {
            None => Ok(default),
            Some(v) => in_range(name, v, max),
        }
    }

    /// `eos_token_id`: one id or a list (newer configs); empty when absent.
    pub fn eos_token_ids(&self) -> Result<Vec<u32>> {
        eos_ids(self.get("eos_token_id"))
    }

    /// Fails on a key whose value is set and not in `allowed` (an option wgpt does not
    /// implement), naming the key and the supported values.
    pub fn refuse_unless<T: PartialEq + std::fmt::Debug>(
        &self,
        name: &str,
        value: Option<T>,
        allowed: &[T],
    ) -> Result<()> {
        match value {
            Some(v) if !allowed.contains(&v) => Err(Error::Unsupported(format!(
                "`{name}` = {v:?} in config.json; supported: {allowed:?}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Largest sizes accepted, far above any real model; they keep arithmetic in range and make
/// an absurd config fail before anything is allocated.
pub(crate) const MAX_EMBD: usize = 1 << 16;
pub(crate) const MAX_LAYERS: usize = 1024;
pub(crate) const MAX_POSITIONS: usize = 1 << 24;

/// The context a model runs with unless `LoadOptions::ctx` (`--ctx`) says otherwise: 4096
/// positions (capped by the model's own context), as llama.cpp's and Ollama's defaults. Long-context
/// checkpoints (Llama 3.x: 131072) ask for the rest explicitly; the KV cache grows with it.
pub const DEFAULT_CONTEXT: usize = 4096;
pub(crate) const MAX_VOCAB: usize = 1 << 22;
pub(crate) const MAX_INNER: usize = 4 * MAX_EMBD;

/// An `eos_token_id` value (one id or a list of ids) as ids.
pub(crate) fn eos_ids(v: Option<&Value>) -> Result<Vec<u32>> {
    let one = |x: &Value| x.as_u64().and_then(|x| u32::try_from(x).ok());
    let ids = match v {
        None | Some(Value::Null) => Some(vec![]),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(x) => one(x).map(|id| vec![id]),
    };
    ids.ok_or_else(|| {
        let v = v.map_or_else(String::new, Value::to_string);
        bad(format!(
            "`eos_token_id` = {v} is not a token id or a list of them"
        ))
    })
}

/// Which layers use a sliding window of `window` positions: `layer_types` where the config
/// lists them (`sliding_attention` / `full_attention`, as transformers 5 writes every
/// windowed model), else `sliding_window_pattern` (every pattern-th layer global, Gemma 3's
/// older configs), else `local(l)`, the family's rule.
pub(crate) fn layer_windows(
    f: &Fields,
    n_layer: usize,
    window: usize,
    local: impl Fn(usize) -> bool,
) -> Result<Vec<Option<usize>>> {
    if let Some(types) = f.get("layer_types") {
        let types = types
            .as_array()
            .filter(|t| t.len() == n_layer)
            .ok_or_else(|| {
                bad(format!(
                    "`layer_types` is not a list of {n_layer} layer types"
                ))
            })?;
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(Some(window)),
                Some("full_attention") => Ok(None),
                _ => Err(Error::Unsupported(format!(
                    "layer type {t} in `layer_types`; supported: sliding_attention, full_attention"
                ))),
            })
            .collect();
    }
    if let Some(pattern) = f.uint("sliding_window_pattern")? {
        let pattern = in_range("sliding_window_pattern", pattern, MAX_LAYERS)?;
        return Ok((0..n_layer)
            .map(|l| ((l + 1) % pattern != 0).then_some(window))
            .collect());
    }
    Ok((0..n_layer).map(|l| local(l).then_some(window)).collect())
}

pub(crate) fn bad(message: String) -> Error {
    Error::Config {
        path: "config.json".into(),
        message,
    }
}

pub(crate) fn in_range(name: &str, v: u64, max: usize) -> Result<usize> {
    match usize::try_from(v) {
        Ok(u) if (1..=max).contains(&u) => Ok(u),
        _ => Err(bad(format!("`{name}` = {v} is out of range 1..={max}"))),
    }
}

impl Config {
    /// Adds the stop ids of a `generation_config.json` (`eos_token_id`, one id or a list) to
    /// [`Config::eos_token_ids`], as HF's `generate` uses them; a missing file adds nothing.
    pub fn add_generation_config(&mut self, path: &Path) -> Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let at = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| at(format!("not valid JSON: {e}")))?;
        let ids = eos_ids(v.get("eos_token_id")).map_err(|e| match e {
            Error::Config { message, .. } => at(message),
            other => other,
        })?;
        for id in ids {
            if !self.eos_token_ids.contains(&id) {
                self.eos_token_ids.push(id);
            }
        }
        Ok(())
    }

    /// Checks that every size is in range and the sizes agree with each other. Every model
    /// constructor calls this, so a `Config` built by hand gets the same checks as a file.
    pub fn validate(&self) -> Result<()> {
        in_range("n_embd", self.n_embd as u64, MAX_EMBD)?;
        in_range("n_layer", self.n_layer as u64, MAX_LAYERS)?;
        in_range("n_head", self.n_head as u64, MAX_EMBD)?;
        in_range("n_positions", self.n_positions as u64, MAX_POSITIONS)?;
        if !(1..=self.n_positions).contains(&self.n_ctx) {
            return Err(Error::InvalidInput(format!(
                "a context of {} positions is out of range 1..={} (the model's context)",
                self.n_ctx, self.n_positions
            )));
        }
        in_range("n_inner", self.n_inner as u64, MAX_INNER)?;
        in_range("vocab_size", self.vocab_size as u64, MAX_VOCAB)?;
        let (n_embd, n_head) = (self.n_embd, self.n_head);
        let head_dim = self.head_dim();
        match self.head_size {
            Some(h) => {
                in_range("head_dim", h as u64, MAX_EMBD)?;
            }
            None if n_embd % n_head != 0 => {
                return Err(bad(format!(
                    "n_head = {n_head} does not divide n_embd = {n_embd}"
                )));
            }
            None => {}
        }
        if !head_dim.is_multiple_of(4) || head_dim > 256 {
            let how = if self.head_size.is_some() {
                ""
            } else {
                " (n_embd / n_head)"
            };
            return Err(Error::Unsupported(format!(
                "head_dim = {head_dim}{how}; wgpt needs a multiple of 4 up to 256"
            )));
        }
        let n_kv_head = self.n_kv_head();
        in_range("num_key_value_heads", n_kv_head as u64, n_head)?;
        if n_head % n_kv_head != 0 {
            return Err(bad(format!(
                "num_key_value_heads = {n_kv_head} does not divide num_attention_heads = {n_head}"
            )));
        }
        if !self.n_inner.is_multiple_of(4) {
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
        if let Some(e) = self.embedding_width {
            in_range("word_embed_proj_dim", e as u64, MAX_EMBD)?;
            if e % 4 != 0 {
                return Err(Error::Unsupported(format!(
                    "word_embed_proj_dim = {e}; wgpt needs a multiple of 4"
                )));
            }
        }
        if let Some(rope) = &self.rope {
            rope.validate(head_dim)?;
        }
        if !self.windows.is_empty() && self.windows.len() != self.n_layer {
            return Err(bad(format!(
                "{} sliding-window entries for {} layers",
                self.windows.len(),
                self.n_layer
            )));
        }
        for w in self.windows.iter().flatten() {
            in_range("sliding_window", *w as u64, MAX_POSITIONS)?;
        }
        for (name, v) in [
            ("attn_logit_softcapping", self.attn_softcap),
            ("query_pre_attn_scalar", self.attn_scale),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(bad(format!("`{name}` gives {v:?}, not a positive number")));
            }
        }
        Ok(())
    }

    /// The shared fields at the values most families have (LayerNorm, a plain feed-forward,
    /// multi-head attention with heads of `n_embd / n_head`, the embedding as wide as the
    /// model, learned positions) and the sizes at 0: a family's reader fills the rest
    /// (`Config { family, n_embd, …, ..Config::blank() }`).
    pub(crate) fn blank() -> Config {
        Config {
            family: Family::Gpt2,
            n_embd: 0,
            n_layer: 0,
            n_head: 0,
            kv_heads: None,
            head_size: None,
            norm: NormKind::LayerNorm,
            mlp: MlpKind::Plain,
            embedding_width: None,
            rope: None,
            n_positions: 0,
            n_ctx: 0,
            n_inner: 0,
            vocab_size: 0,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            eos_token_ids: Vec::new(),
            scale_attn_weights: true,
            attn_scale: None,
            attn_softcap: None,
            windows: Vec::new(),
        }
    }

    /// Dimension of one attention head: [`Config::head_size`], else `n_embd / n_head`.
    pub fn head_dim(&self) -> usize {
        // `max(1)`: a hand-built config with n_head 0 fails `validate`, not here.
        self.head_size.unwrap_or(self.n_embd / self.n_head.max(1))
    }

    /// The sliding window of layer `l`, if it is a local-attention layer.
    pub fn window(&self, l: usize) -> Option<usize> {
        self.windows.get(l).copied().flatten()
    }

    /// The attention score scale: [`Config::attn_scale`], else 1/√head_dim (or 1 without
    /// `scale_attn_weights`).
    pub fn attention_scale(&self) -> f32 {
        match (self.attn_scale, self.scale_attn_weights) {
            (Some(s), _) => s,
            (None, true) => 1.0 / (self.head_dim() as f32).sqrt(),
            (None, false) => 1.0,
        }
    }

    /// Key/value heads: [`Config::kv_heads`], else `n_head`.
    pub fn n_kv_head(&self) -> usize {
        self.kv_heads.unwrap_or(self.n_head)
    }

    /// Width of the token embedding: [`Config::embedding_width`], else `n_embd`.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_width.unwrap_or(self.n_embd)
    }

    /// The attention heads as the kernels take them.
    pub(crate) fn heads(&self) -> crate::kernels::Heads {
        crate::kernels::Heads {
            n_head: self.n_head,
            n_kv_head: self.n_kv_head(),
            head_dim: self.head_dim(),
        }
    }

    /// Whether the norms are RMSNorm (no centring, no bias) rather than LayerNorm.
    pub fn rms_norm(&self) -> bool {
        self.norm == NormKind::RmsNorm
    }

    /// Sets the context in use ([`Config::n_ctx`]): `Some(0)` is the model's whole context,
    /// `Some(n)` n positions (at most the model's), `None` keeps the current one (at most
    /// the model's: a config whose `n_positions` was lowered by hand follows it).
    pub fn set_context(&mut self, ctx: Option<usize>) -> Result<()> {
        match ctx {
            None => {
                self.n_ctx = self.n_ctx.min(self.n_positions);
                Ok(())
            }
            Some(0) => {
                self.n_ctx = self.n_positions;
                Ok(())
            }
            Some(n) if n > self.n_positions => Err(Error::InvalidInput(format!(
                "--ctx {n} is more than the model's context of {} positions",
                self.n_positions
            ))),
            Some(n) => {
                self.n_ctx = n;
                Ok(())
            }
        }
    }
}
