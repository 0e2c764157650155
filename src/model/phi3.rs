//! Phi-3 and Phi-3.5 (`model_type` `phi3`): the Llama layout with q, k, v fused in the
//! checkpoint (`qkv_proj`) and gate, up too (`gate_up_proj`), rotary positions on part of each
//! head where `partial_rotary_factor` says so, and `longrope` frequency scaling:
//! frequency j divided by `short_factor[j]` for a context up to
//! `original_max_position_embeddings` and by `long_factor[j]` beyond, cos and sin multiplied
//! by the attention factor √(1 + ln(scale) / ln(original)) (scale = context / original) in
//! both cases. HF switches lists per forward pass by the sequence's length; wgpt, like
//! llama.cpp, by the context in use (`--ctx`): at the default context of a 128k model (4096,
//! its original context) the short factors, as HF for every sequence that fits in it.

use serde_json::{json, Map, Value as Json};

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::gguf::{llama_layout, Mapped, Meta};
use super::rotary::{inv_freq, rope_kind, rope_object, rope_theta};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    bad, layer_windows, Activation, Config, Fields, MlpKind, NormKind, Rope, RopeScaling, MAX_EMBD,
    MAX_INNER, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use crate::error::{Error, Result};
use crate::kernels::rope_table;

/// `longrope` scaling: per-pair factors for short and long contexts, the context that
/// separates them, and the factor cos and sin are multiplied by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LongRope {
    pub short: Vec<f64>,
    pub long: Vec<f64>,
    pub original: usize,
    pub attention_factor: f64,
}

impl LongRope {
    /// The factors a context of `n_ctx` positions uses (llama.cpp's rule).
    pub(crate) fn factors(&self, n_ctx: usize) -> &[f64] {
        match n_ctx > self.original {
            true => &self.long,
            false => &self.short,
        }
    }
}

pub(crate) struct Phi3;

fn long_rope(cfg: &Config) -> Option<&LongRope> {
    match &cfg.family {
        Family::Phi3 { long_rope } => long_rope.as_ref(),
        _ => None,
    }
}

/// A list of positive numbers.
fn factor_list(obj: &Fields, key: &str, name: &str, pairs: usize) -> Result<Vec<f64>> {
    let v = obj
        .get(name)
        .and_then(Json::as_array)
        .ok_or_else(|| bad(format!("`{key}.{name}` is missing or not a list")))?;
    let list: Option<Vec<f64>> = v
        .iter()
        .map(|x| x.as_f64().filter(|x| x.is_finite() && *x > 0.0))
        .collect();
    match list {
        Some(l) if l.len() == pairs => Ok(l),
        _ => Err(bad(format!(
            "`{key}.{name}` is not a list of {pairs} positive numbers (one per rotated pair)"
        ))),
    }
}

/// `rope_parameters` / `rope_scaling` of type `longrope` (or none).
fn parse_long_rope(f: &Fields, dims: usize, n_positions: usize) -> Result<(f64, Option<LongRope>)> {
    let theta = rope_theta(f, 10_000.0)?;
    let Some((key, obj)) = rope_object(f)? else {
        return Ok((theta, None));
    };
    match rope_kind(&obj)?.unwrap_or("default") {
        "default" => return Ok((theta, None)),
        "longrope" => {}
        other => {
            return Err(Error::Unsupported(format!(
                "`{key}.rope_type` = \"{other}\" for phi3; supported: default, longrope"
            )))
        }
    }
    let original = match obj.uint("original_max_position_embeddings")? {
        Some(o) => Some(o),
        None => f.uint("original_max_position_embeddings")?,
    };
    let original = crate::config::in_range(
        "original_max_position_embeddings",
        original.ok_or_else(|| bad("`original_max_position_embeddings` is missing".into()))?,
        MAX_POSITIONS,
    )?;
    let scale = n_positions as f64 / original as f64;
    let attention_factor = match obj.number("attention_factor")? {
        Some(a) if a.is_finite() && a > 0.0 => a,
        Some(a) => {
            return Err(bad(format!(
                "`{key}.attention_factor` = {a} is not positive"
            )))
        }
        None if scale <= 1.0 => 1.0,
        None => (1.0 + scale.ln() / (original as f64).ln()).sqrt(),
    };
    Ok((
        theta,
        Some(LongRope {
            short: factor_list(&obj, key, "short_factor", dims / 2)?,
            long: factor_list(&obj, key, "long_factor", dims / 2)?,
            original,
            attention_factor,
        }),
    ))
}

impl Arch for Phi3 {
    fn model_types(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        let act = f.string("hidden_act")?.unwrap_or("silu");
        f.refuse_unless("hidden_act", Some(act), &["silu"])?;
        let n_embd = f.size("hidden_size", MAX_EMBD)?;
        let n_head = f.size("num_attention_heads", MAX_EMBD)?;
        let n_layer = f.size("num_hidden_layers", MAX_LAYERS)?;
        let n_positions = f.size("max_position_embeddings", MAX_POSITIONS)?;
        let head_dim = match f.uint("head_dim")? {
            Some(h) => crate::config::in_range("head_dim", h, MAX_EMBD)?,
            None => n_embd / n_head,
        };
        let partial = match f.number("partial_rotary_factor")? {
            Some(p) => p,
            None => match f.object("rope_parameters")? {
                Some(r) => r.number("partial_rotary_factor")?.unwrap_or(1.0),
                None => 1.0,
            },
        };
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(bad(format!(
                "`partial_rotary_factor` = {partial} is out of range (0, 1]"
            )));
        }
        let dims = (head_dim as f64 * partial) as usize;
        let (theta, long_rope) = parse_long_rope(f, dims, n_positions)?;
        let windows = match f.uint("sliding_window")? {
            Some(w) if (w as usize) < n_positions => {
                let w = crate::config::in_range("sliding_window", w, MAX_POSITIONS)?;
                layer_windows(f, n_layer, w, |_| true)?
            }
            _ => Vec::new(),
        };
        Ok(Config {
            family: Family::Phi3 { long_rope },
            kv_heads: Some(f.size_or("num_key_value_heads", MAX_EMBD, n_head)?),
            head_size: Some(head_dim),
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Gated,
            rope: Some(Rope {
                theta,
                scaling: RopeScaling::None,
                dims,
            }),
            n_embd,
            n_layer,
            n_head,
            n_positions,
            n_inner: f.size("intermediate_size", MAX_INNER)?,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: f.number("rms_norm_eps")?.unwrap_or(1e-5) as f32,
            activation: Activation::Silu,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(false),
            eos_token_ids: f.eos_token_ids()?,
            windows,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["phi3-mini"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        if name != "phi3-mini" {
            return None;
        }
        // Phi-3.5-mini: 32 heads of 96, longrope up from 4096 (factors at 1: the shapes are
        // what a benchmark needs).
        Some(Config {
            family: Family::Phi3 {
                long_rope: Some(LongRope {
                    short: vec![1.0; 48],
                    long: vec![1.0; 48],
                    original: 4096,
                    attention_factor: (1.0 + 32f64.ln() / 4096f64.ln()).sqrt(),
                }),
            },
            kv_heads: Some(32),
            head_size: Some(96),
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Gated,
            rope: Some(Rope {
                theta: 10_000.0,
                scaling: RopeScaling::None,
                dims: 96,
            }),
            n_embd: 3072,
            n_layer: 32,
            n_head: 32,
            n_positions: 131_072,
            n_inner: 8192,
            vocab_size: 32_064,
            layer_norm_epsilon: 1e-5,
            activation: Activation::Silu,
            tie_word_embeddings: false,
            eos_token_ids: vec![32_000],
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        (!name.ends_with(".rotary_emb.inv_freq")).then_some(name)
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let h = cfg.heads();
        let (q, kv) = (h.q_c(), h.kv_c());
        let mut t = TensorList::new();
        t.embedding("model.embed_tokens.weight".into(), v, c);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            t.vector(p("input_layernorm.weight"), c);
            t.linear_weight(p("self_attn.qkv_proj.weight"), c, q + 2 * kv);
            t.linear_weight(p("self_attn.o_proj.weight"), q, c);
            t.vector(p("post_attention_layernorm.weight"), c);
            t.linear_weight(p("mlp.gate_up_proj.weight"), c, 2 * f);
            t.linear_weight(p("mlp.down_proj.weight"), f, c);
        }
        t.vector("model.norm.weight".into(), c);
        t.untied_head(cfg, "lm_head.weight", c);
        let half = cfg.rope.as_ref().map_or(0, |r| r.dims / 2);
        t.generated("rotary table".into(), cfg.n_ctx * 2 * half);
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let h = cfg.heads();
        let (q, kv) = (h.q_c(), h.kv_c());
        let wte = up.row_chunks("model.embed_tokens.weight", v, c)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            layers.push(Layer {
                attn_norm: up.rms_norm(&p("input_layernorm"), c)?,
                qkv: up.linear_no_bias(&p("self_attn.qkv_proj"), c, q + 2 * kv)?,
                attn_out: up.linear_no_bias(&p("self_attn.o_proj"), q, c)?,
                mlp_norm: up.rms_norm(&p("post_attention_layernorm"), c)?,
                mlp_up: up.linear_no_bias(&p("mlp.gate_up_proj"), c, 2 * f)?,
                mlp_down: up.linear_no_bias(&p("mlp.down_proj"), f, c)?,
                norms: Vec::new(),
                linears: Vec::new(),
            });
        }
        let final_norm = up.rms_norm("model.norm", c)?;
        let lm_head = up.untied_head(cfg, "lm_head.weight", c)?;
        let rope = cfg
            .rope
            .as_ref()
            .expect("a Phi-3 config has rotary positions");
        let (scaling, magnitude) = match long_rope(cfg) {
            Some(lr) => (
                RopeScaling::Factors(lr.factors(cfg.n_ctx).to_vec()),
                lr.attention_factor,
            ),
            None => (RopeScaling::None, 1.0),
        };
        let mut table = rope_table(cfg.n_ctx, &inv_freq(rope.dims, rope.theta, &scaling));
        if magnitude != 1.0 {
            for cs in &mut table {
                *cs = cs.map(|x| (x as f64 * magnitude) as f32);
            }
        }
        let table = up.upload("rotary table", table.as_flattened())?;
        Ok(Weights {
            rope: Some(table),
            ..Weights::new(wte, layers, Some(final_norm), lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let rotary_dims = cfg.rope.as_ref().map_or(0, |r| r.dims);
        f.embed(&a.x, &a.tokens, &w.wte, None); //                x = embed_tokens[tokens]      (T, C)
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); //    ln = RMSNorm1(x) ⁽ᶠ⁾          (T, C)
            f.linear("qkv_proj", &a.qkv, h, &lw.qkv, Out::Set); // qkv = ln·Wqkv                (T, Q + 2K)
            if let Some(table) = &w.rope {
                f.rope(&a.qkv, table, rotary_dims); //            q, k = rotate(q, k, pos..), longrope table
            }
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(q·Kᵀ/√d + mask)·V, by kv group (T, Q)
            f.linear("o_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo
            let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); //     ln = RMSNorm2(x) ⁽ᶠ⁾          (T, C)
            f.linear("gate_up_proj", &a.gate_up, h, &lw.mlp_up, Out::Set); // gu = ln·Wgate_up  (T, 2F)
            f.gated(&a.fc, &a.gate_up, Activation::Silu); //      fc = silu(gate) · up          (T, F)
            f.linear("down_proj", &a.x, &a.fc, &lw.mlp_down, Out::Add); // x += fc·Wdown
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  ln = RMSNorm_f(x) ⁽ᶠ⁾         (T, C)
        f.lm_head(&a.logits, h, w.head(), &w.zeros); //           logits = ln·headᵀ             (R, V)
    }

    /// `phi3` as llama.cpp's converter writes it: fused `attn_qkv` and `ffn_up` (gate | up),
    /// `rope_factors_short` / `rope_factors_long` beside the layers.
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        let arch = m.arch;
        let (n_embd, n_head) = (
            m.required("embedding_length")?,
            m.required("attention.head_count")?,
        );
        c.insert("model_type".into(), json!("phi3"));
        c.insert("hidden_size".into(), json!(n_embd));
        c.insert(
            "num_hidden_layers".into(),
            json!(m.required("block_count")?),
        );
        c.insert("num_attention_heads".into(), json!(n_head));
        if let Some(kv) = m.uint("attention.head_count_kv")? {
            c.insert("num_key_value_heads".into(), json!(kv));
        }
        let head_dim = n_embd / n_head.max(1);
        c.insert("head_dim".into(), json!(head_dim));
        if let Some(r) = m.uint("rope.dimension_count")? {
            c.insert(
                "partial_rotary_factor".into(),
                json!(r as f64 / head_dim as f64),
            );
        }
        c.insert(
            "intermediate_size".into(),
            json!(m.required("feed_forward_length")?),
        );
        let n_ctx = m.required("context_length")?;
        c.insert("max_position_embeddings".into(), json!(n_ctx));
        if let Some(e) = m.float("attention.layer_norm_rms_epsilon")? {
            c.insert("rms_norm_eps".into(), json!(e));
        }
        if let Some(t) = m.float("rope.freq_base")? {
            c.insert("rope_theta".into(), json!(t));
        }
        if let Some(w) = m.uint("attention.sliding_window")? {
            c.insert("sliding_window".into(), json!(w));
        }
        // longrope: the factor tensors, the original context and the attention factor.
        if let (Some(short), Some(long)) = (
            m.vector("rope_factors_short.weight")?,
            m.vector("rope_factors_long.weight")?,
        ) {
            let original = m
                .uint("rope.scaling.original_context_length")?
                .ok_or_else(|| {
                    super::gguf::arch::meta_error(format!(
                        "`{arch}.rope.scaling.original_context_length` is missing"
                    ))
                })?;
            let mut rope = json!({
                "rope_type": "longrope",
                "short_factor": short,
                "long_factor": long,
                "original_max_position_embeddings": original,
            });
            if let Some(a) = m.float("rope.scaling.attn_factor")? {
                rope["attention_factor"] = json!(a);
            }
            c.insert("rope_scaling".into(), rope);
        }
        Ok(())
    }

    fn gguf_setting_tensors(&self) -> &'static [&'static str] {
        &["rope_factors_short.weight", "rope_factors_long.weight"]
    }

    fn gguf_tensor(
        &self,
        _arch: &str,
        _cfg: &Config,
        layer: Option<usize>,
        part: &str,
        suffix: &str,
    ) -> Option<Mapped> {
        llama_layout(layer, part, suffix, |p| match p {
            "attn_qkv" => Some("self_attn.qkv_proj"),
            "ffn_norm" => Some("post_attention_layernorm"),
            "ffn_up" => Some("mlp.gate_up_proj"),
            _ => None,
        })
    }
}
