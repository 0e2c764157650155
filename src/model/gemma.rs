//! Gemma 2 and Gemma 3 (`model_type` `gemma2`, `gemma3_text`, and the text part of `gemma3`
//! checkpoints): the Llama layout with RMSNorms that scale by `1 + w`, the token embedding
//! scaled by √C (rounded to the checkpoint's dtype, as HF does), four norms per layer (the
//! attention and feed-forward outputs are normalized before their residual add), a GeGLU
//! feed-forward (tanh GELU), attention scores scaled by `query_pre_attn_scalar`^−½, local
//! layers attending to a sliding window beside global ones, and
//! - Gemma 2: attention scores soft-capped (`attn_logit_softcapping`, 50) and the logits too
//!   (`final_logit_softcapping`, 30);
//! - Gemma 3: RMSNorm on each query and key head (`q_norm`, `k_norm`), and the local layers'
//!   own rotary base (`rope_local_base_freq`) beside the global layers' (with their scaling).

use serde_json::{json, Map, Value as Json};

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::gguf::{llama_layout, Mapped, Meta};
use super::rotary::{inv_freq, rope_scaling, rope_theta, scaling_of};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    bad, layer_windows, Activation, Config, Fields, MlpKind, NormKind, Rope, RopeScaling, MAX_EMBD,
    MAX_INNER, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use crate::error::{Error, Result};
use crate::format::DType;
use crate::kernels::rope_table;

pub(crate) struct Gemma;

/// The Gemma-only options of a config.
struct Options {
    qk_norm: bool,
    final_softcap: Option<f32>,
    local_theta: f64,
}

fn options(cfg: &Config) -> Options {
    match cfg.family {
        Family::Gemma {
            qk_norm,
            final_softcap,
            local_theta,
        } => Options {
            qk_norm,
            final_softcap,
            local_theta,
        },
        _ => Options {
            qk_norm: false,
            final_softcap: None,
            local_theta: 10_000.0,
        },
    }
}

/// A positive number, or `None` where the config sets none (`null`).
fn cap(f: &Fields, name: &str, default: Option<f64>) -> Result<Option<f32>> {
    let v = match f.get(name) {
        None if f.0.contains_key(name) => None, // written as null: no cap
        None => default,
        Some(_) => f.number(name)?,
    };
    match v {
        Some(c) if !(c.is_finite() && c > 0.0) => {
            Err(bad(format!("`{name}` = {c} is not a positive number")))
        }
        v => Ok(v.map(|c| c as f32)),
    }
}

/// The rotary base and scaling of one layer type: transformers 5 writes `rope_parameters`
/// per layer type (`full_attention`, `sliding_attention`); older configs `rope_theta` with
/// `rope_scaling` for the global layers and `rope_local_base_freq` for the local ones.
fn rope_of(f: &Fields, layer_type: &str, default_theta: f64) -> Result<(f64, RopeScaling)> {
    if let Some(p) = f.object("rope_parameters")? {
        if let Some(t) = p.object(layer_type)? {
            let key = format!("rope_parameters.{layer_type}");
            let theta = t.number("rope_theta")?.unwrap_or(default_theta);
            return Ok((theta, scaling_of(&key, &t)?));
        }
    }
    if layer_type == "sliding_attention" {
        return Ok((
            f.number("rope_local_base_freq")?.unwrap_or(default_theta),
            RopeScaling::None,
        ));
    }
    Ok((rope_theta(f, default_theta)?, rope_scaling(f)?))
}

/// √C as HF multiplies the embedding by it: in the embedding's dtype.
fn embed_scale(n_embd: usize, dtype: Option<DType>) -> f32 {
    let s = (n_embd as f64).sqrt() as f32;
    match dtype {
        Some(DType::BF16) => half::bf16::from_f32(s).to_f32(),
        Some(DType::F16) => half::f16::from_f32(s).to_f32(),
        _ => s,
    }
}

impl Arch for Gemma {
    fn model_types(&self) -> &'static [&'static str] {
        &["gemma3_text", "gemma2", "gemma3"]
    }

    fn config(&self, top: &Fields) -> Result<Config> {
        let model_type = top.string("model_type")?.unwrap_or("gemma3_text");
        // A `gemma3` (vision + text) config holds the text model's under `text_config`.
        let text;
        let f = match model_type {
            "gemma3" => {
                text = top
                    .object("text_config")?
                    .ok_or_else(|| bad("a `gemma3` config without `text_config`".into()))?;
                &text
            }
            _ => top,
        };
        let gemma2 = model_type == "gemma2";
        let act = match f.string("hidden_activation")? {
            Some(a) => Some(a),
            None => f.string("hidden_act")?,
        };
        f.refuse_unless("hidden_activation", act, &["gelu_pytorch_tanh"])?;
        let n_embd = f.size("hidden_size", MAX_EMBD)?;
        let n_head = f.size_or("num_attention_heads", MAX_EMBD, 8)?;
        let n_layer = f.size("num_hidden_layers", MAX_LAYERS)?;
        let head_dim = f.size_or("head_dim", MAX_EMBD, 256)?;
        let n_positions = f.size_or(
            "max_position_embeddings",
            MAX_POSITIONS,
            if gemma2 { 8192 } else { 131_072 },
        )?;
        let window = f.size_or("sliding_window", MAX_POSITIONS, 4096)?;
        // Gemma 2 alternates local and global layers from a local one; Gemma 3 has five
        // local layers to each global one.
        let windows = layer_windows(f, n_layer, window, |l| match gemma2 {
            true => l % 2 == 0,
            false => (l + 1) % 6 != 0,
        })?;
        let (theta, scaling) = rope_of(f, "full_attention", if gemma2 { 1e4 } else { 1e6 })?;
        let (local_theta, local_scaling) = rope_of(f, "sliding_attention", 1e4)?;
        if local_scaling != RopeScaling::None {
            return Err(Error::Unsupported(format!(
                "rotary scaling {local_scaling:?} on the sliding-window layers"
            )));
        }
        let scalar = f.number("query_pre_attn_scalar")?.unwrap_or(256.0);
        if !(scalar.is_finite() && scalar > 0.0) {
            return Err(bad(format!(
                "`query_pre_attn_scalar` = {scalar} is not a positive number"
            )));
        }
        let mut eos_token_ids = f.eos_token_ids()?;
        if eos_token_ids.is_empty() {
            eos_token_ids = top.eos_token_ids()?;
        }
        Ok(Config {
            family: Family::Gemma {
                qk_norm: !gemma2,
                final_softcap: cap(f, "final_logit_softcapping", gemma2.then_some(30.0))?,
                local_theta,
            },
            kv_heads: Some(f.size_or("num_key_value_heads", MAX_EMBD, n_head)?),
            head_size: Some(head_dim),
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Gated,
            rope: Some(Rope {
                theta,
                scaling,
                dims: head_dim,
            }),
            n_embd,
            n_layer,
            n_head,
            n_positions,
            n_inner: f.size("intermediate_size", MAX_INNER)?,
            vocab_size: f.size_or(
                "vocab_size",
                MAX_VOCAB,
                if gemma2 { 256_000 } else { 262_208 },
            )?,
            layer_norm_epsilon: f.number("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            activation: Activation::GeluTanh,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(true),
            eos_token_ids,
            attn_scale: Some((1.0 / scalar.sqrt()) as f32),
            attn_softcap: cap(f, "attn_logit_softcapping", gemma2.then_some(50.0))?,
            windows,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["gemma3-1b", "gemma2-2b"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        // (hidden, layers, heads, kv heads, head_dim, ffn, window)
        let (n_embd, n_layer, n_head, n_kv, head_dim, n_inner, window) = match name {
            "gemma3-1b" => (1152, 26, 4, 1, 256, 6912, 512),
            "gemma2-2b" => (2304, 26, 8, 4, 256, 9216, 4096),
            _ => return None,
        };
        let gemma2 = name == "gemma2-2b";
        Some(Config {
            family: Family::Gemma {
                qk_norm: !gemma2,
                final_softcap: gemma2.then_some(30.0),
                local_theta: 1e4,
            },
            kv_heads: Some(n_kv),
            head_size: Some(head_dim),
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Gated,
            rope: Some(Rope {
                theta: if gemma2 { 1e4 } else { 1e6 },
                scaling: RopeScaling::None,
                dims: head_dim,
            }),
            n_embd,
            n_layer,
            n_head,
            n_positions: if gemma2 { 8192 } else { 32_768 },
            n_inner,
            vocab_size: if gemma2 { 256_000 } else { 262_144 },
            layer_norm_epsilon: 1e-6,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            eos_token_ids: vec![1],
            attn_scale: Some(1.0 / 16.0),
            attn_softcap: gemma2.then_some(50.0),
            windows: (0..n_layer)
                .map(|l| match gemma2 {
                    true => l % 2 == 0,
                    false => (l + 1) % 6 != 0,
                })
                .map(|local| local.then_some(window))
                .collect(),
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        // A `gemma3` checkpoint's text model: `language_model.model.*`, `language_model.lm_head`;
        // its vision tower and projector are not read.
        let name = name.strip_prefix("language_model.").unwrap_or(name);
        let skip = name.starts_with("vision_tower.") || name.starts_with("multi_modal_projector.");
        (!skip).then_some(name)
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let h = cfg.heads();
        let (q, kv, hd) = (h.q_c(), h.kv_c(), h.head_dim);
        let o = options(cfg);
        let mut t = TensorList::new();
        t.embedding("model.embed_tokens.weight".into(), v, c);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            t.vector(p("input_layernorm.weight"), c);
            let qkv = [
                (p("self_attn.q_proj.weight"), q),
                (p("self_attn.k_proj.weight"), kv),
                (p("self_attn.v_proj.weight"), kv),
            ];
            t.linear_weights_stacked(&qkv, c);
            if o.qk_norm {
                t.vector(p("self_attn.q_norm.weight"), hd);
                t.vector(p("self_attn.k_norm.weight"), hd);
            }
            t.linear_weight(p("self_attn.o_proj.weight"), q, c);
            t.vector(p("post_attention_layernorm.weight"), c);
            t.vector(p("pre_feedforward_layernorm.weight"), c);
            let gate_up = [(p("mlp.gate_proj.weight"), f), (p("mlp.up_proj.weight"), f)];
            t.linear_weights_stacked(&gate_up, c);
            t.linear_weight(p("mlp.down_proj.weight"), f, c);
            t.vector(p("post_feedforward_layernorm.weight"), c);
        }
        t.vector("model.norm.weight".into(), c);
        t.untied_head(cfg, "lm_head.weight", c);
        t.generated("rotary table".into(), cfg.n_ctx * hd);
        if cfg.windows.iter().any(Option::is_some) {
            t.generated("local rotary table".into(), cfg.n_ctx * hd);
        }
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let h = cfg.heads();
        let (q, kv, hd) = (h.q_c(), h.kv_c(), h.head_dim);
        let o = options(cfg);
        // x·(1 + w): the GGUF converter has added the 1 already.
        let one = if up.reads_gguf() { 0.0 } else { 1.0 };
        let embed_dtype = up.file_dtype("model.embed_tokens.weight", &[v, c])?;
        let wte = up.row_chunks("model.embed_tokens.weight", v, c)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let qkv_parts = [
                (p("self_attn.q_proj"), q),
                (p("self_attn.k_proj"), kv),
                (p("self_attn.v_proj"), kv),
            ];
            let gate_up = [(p("mlp.gate_proj"), f), (p("mlp.up_proj"), f)];
            let mut norms = vec![
                (
                    "post_attention",
                    up.rms_norm_offset(&p("post_attention_layernorm"), c, one)?,
                ),
                (
                    "post_feedforward",
                    up.rms_norm_offset(&p("post_feedforward_layernorm"), c, one)?,
                ),
            ];
            if o.qk_norm {
                norms.push((
                    "q_norm",
                    up.rms_norm_offset(&p("self_attn.q_norm"), hd, one)?,
                ));
                norms.push((
                    "k_norm",
                    up.rms_norm_offset(&p("self_attn.k_norm"), hd, one)?,
                ));
            }
            layers.push(Layer {
                attn_norm: up.rms_norm_offset(&p("input_layernorm"), c, one)?,
                qkv: up.linears_stacked(&qkv_parts, c, false)?,
                attn_out: up.linear_no_bias(&p("self_attn.o_proj"), q, c)?,
                mlp_norm: up.rms_norm_offset(&p("pre_feedforward_layernorm"), c, one)?,
                mlp_up: up.linears_stacked(&gate_up, c, false)?,
                mlp_down: up.linear_no_bias(&p("mlp.down_proj"), f, c)?,
                norms,
                linears: Vec::new(),
            });
        }
        let final_norm = up.rms_norm_offset("model.norm", c, one)?;
        let lm_head = up.untied_head(cfg, "lm_head.weight", c)?;
        let rope = cfg
            .rope
            .as_ref()
            .expect("a Gemma config has rotary positions");
        let global = rope_table(cfg.n_ctx, &inv_freq(rope.dims, rope.theta, &rope.scaling));
        let global = up.upload("rotary table", global.as_flattened())?;
        let local = match cfg.windows.iter().any(Option::is_some) {
            true => {
                let freqs = inv_freq(rope.dims, o.local_theta, &RopeScaling::None);
                let table = rope_table(cfg.n_ctx, &freqs);
                Some(up.upload("local rotary table", table.as_flattened())?)
            }
            false => None,
        };
        Ok(Weights {
            rope: Some(global),
            rope_local: local,
            embed_scale: embed_scale(c, embed_dtype),
            ..Weights::new(wte, layers, Some(final_norm), lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let (hd, o) = (cfg.head_dim(), options(cfg));
        f.embed_scaled(&a.x, &a.tokens, &w.wte, None, w.embed_scale); // x = embed[tokens]·√C  (T, C)
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            let local = cfg.window(l).is_some();
            let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); //    ln = RMSNorm_in(x) ⁽ᶠ⁾        (T, C)
            f.linear("qkv_proj", &a.qkv, h, &lw.qkv, Out::Set); // qkv = ln·[Wq|Wk|Wv]          (T, Q + 2K)
            if o.qk_norm {
                f.head_norm(&a.qkv, lw.norm("q_norm"), lw.norm("k_norm")); // q, k = RMSNorm per head (Gemma 3)
            }
            let table = w.rope_local.as_ref().filter(|_| local).or(w.rope.as_ref()); // local layers: their own base
            if let Some(table) = table {
                f.rope(&a.qkv, table, hd); //                     q, k = rotate(q, k, pos..)
            }
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(cap(q·Kᵀ·s) + mask (window on local layers))·V (T, Q)
            f.linear("o_proj", &a.ln2, &a.att, &lw.attn_out, Out::Set); // o = att·Wo          (T, C)
            f.add_norm(&a.x, &a.ln2, lw.norm("post_attention")); // x += RMSNorm_post_attn(o)
            let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); //     ln = RMSNorm_pre_ff(x) ⁽ᶠ⁾    (T, C)
            f.linear("gate_up_proj", &a.gate_up, h, &lw.mlp_up, Out::Set); // gu = ln·[Wgate|Wup] (T, 2F)
            f.gated(&a.fc, &a.gate_up, Activation::GeluTanh); //  fc = gelu_tanh(gate) · up     (T, F)
            f.linear("down_proj", &a.ln2, &a.fc, &lw.mlp_down, Out::Set); // m = fc·Wdown      (T, C)
            f.add_norm(&a.x, &a.ln2, lw.norm("post_feedforward")); // x += RMSNorm_post_ff(m)
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  ln = RMSNorm_f(x) ⁽ᶠ⁾         (T, C)
        f.lm_head(&a.logits, h, w.head(), &w.zeros); //           logits = ln·headᵀ             (R, V)
        if let Some(cap) = o.final_softcap {
            f.softcap_logits(&a.logits, cap); //                  logits = cap·tanh(logits / cap) (Gemma 2)
        }
    }

    /// `gemma2` and `gemma3` as llama.cpp's converter writes them (norm weights stored as
    /// `1 + w`, q / k rows as the checkpoint has them).
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["gemma2", "gemma3"]
    }

    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        let arch = m.arch;
        let gemma2 = arch == "gemma2";
        let n_layer = m.required("block_count")?;
        c.insert(
            "model_type".into(),
            json!(if gemma2 { "gemma2" } else { "gemma3_text" }),
        );
        c.insert("hidden_size".into(), json!(m.required("embedding_length")?));
        c.insert("num_hidden_layers".into(), json!(n_layer));
        c.insert(
            "num_attention_heads".into(),
            json!(m.required("attention.head_count")?),
        );
        if let Some(kv) = m.uint("attention.head_count_kv")? {
            c.insert("num_key_value_heads".into(), json!(kv));
        }
        let head_dim = m.required("attention.key_length")?;
        if let Some(v) = m.uint("attention.value_length")? {
            if v != head_dim {
                return Err(Error::Unsupported(format!(
                    "`{arch}.attention.value_length` = {v} differs from the key length {head_dim}"
                )));
            }
        }
        c.insert("head_dim".into(), json!(head_dim));
        c.insert(
            "intermediate_size".into(),
            json!(m.required("feed_forward_length")?),
        );
        c.insert(
            "max_position_embeddings".into(),
            json!(m.required("context_length")?),
        );
        if let Some(e) = m.float("attention.layer_norm_rms_epsilon")? {
            c.insert("rms_norm_eps".into(), json!(e));
        }
        if let Some(w) = m.uint("attention.sliding_window")? {
            c.insert("sliding_window".into(), json!(w));
        }
        // llama.cpp scales queries by 1/√key_length for these architectures unless told
        // otherwise; HF by query_pre_attn_scalar, which the converter does not write.
        let scalar = m
            .float("attention.query_pre_attn_scalar")?
            .unwrap_or(head_dim as f64);
        c.insert("query_pre_attn_scalar".into(), json!(scalar));
        for (gguf, hf) in [
            ("attn_logit_softcapping", "attn_logit_softcapping"),
            ("final_logit_softcapping", "final_logit_softcapping"),
        ] {
            c.insert(hf.into(), json!(m.float(gguf)?));
        }
        if let Some(t) = m.float("rope.freq_base")? {
            c.insert("rope_theta".into(), json!(t));
        }
        if let Some(t) = m.float("rope.freq_base_swa")? {
            c.insert("rope_local_base_freq".into(), json!(t));
        }
        if let Some(pattern) = m.uint("attention.sliding_window_pattern")? {
            c.insert("sliding_window_pattern".into(), json!(pattern));
        }
        match m.string("rope.scaling.type")? {
            None | Some("none") => {}
            Some("linear") => {
                let factor = m.float("rope.scaling.factor")?.unwrap_or(1.0);
                c.insert(
                    "rope_scaling".into(),
                    json!({"rope_type": "linear", "factor": factor}),
                );
            }
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "`{arch}.rope.scaling.type` = \"{other}\"; supported: none, linear"
                )))
            }
        }
        c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
        Ok(())
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
            "post_attention_norm" => Some("post_attention_layernorm"),
            "ffn_norm" => Some("pre_feedforward_layernorm"),
            "post_ffw_norm" => Some("post_feedforward_layernorm"),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_scale_is_rounded_to_the_checkpoint_dtype() {
        assert_eq!(embed_scale(48, Some(DType::BF16)), 6.9375);
        assert_eq!(embed_scale(48, Some(DType::F32)), 48f32.sqrt());
        assert_eq!(embed_scale(48, None), 48f32.sqrt());
        assert_eq!(embed_scale(2304, Some(DType::BF16)), 48.0);
    }
}
