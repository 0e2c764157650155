//! The Llama family (`model_type` `llama`, `mistral`, `qwen2`, `qwen3`; SmolLM2, TinyLlama and
//! Llama 3.x checkpoints use the `llama` layout): RMSNorm, a gated SiLU feed-forward
//! `down(silu(gate(x)) · up(x))`, rotary positions on whole heads (half-split pairs, with
//! `llama3` or `linear` frequency scaling), grouped-query attention (a cache of
//! `num_key_value_heads` heads), no biases except Qwen2's on q, k and v (and Llama's
//! `attention_bias`), Qwen3's RMSNorm on each query and key head (`q_norm`, `k_norm`) before
//! the rotation. q, k, v and gate, up are each fused into one matrix at upload.
//! Sliding windows (Mistral's `sliding_window`; Qwen2's with `use_sliding_window`, on the
//! layers `layer_types` marks) are real: those layers attend to the window's last positions.

use serde_json::{json, Map, Value as Json};

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::gguf::arch::meta_error;
use super::gguf::{llama_layout, rows_of, Mapped, Meta, RowOrder};
use super::rotary::{inv_freq, rope_scaling, rope_theta};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    Activation, Config, Fields, MlpKind, NormKind, Rope, RopeScaling, MAX_EMBD, MAX_INNER,
    MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use crate::error::{Error, Result};
use crate::kernels::rope_table;

pub(crate) struct Llama;

/// The Llama-only options of a config (no biases for a config of another family).
struct Options {
    qkv_bias: bool,
    o_bias: bool,
    qk_norm: bool,
}

fn options(cfg: &Config) -> Options {
    match cfg.family {
        Family::Llama {
            qkv_bias,
            o_bias,
            qk_norm,
        } => Options {
            qkv_bias,
            o_bias,
            qk_norm,
        },
        _ => Options {
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
        },
    }
}

impl Arch for Llama {
    fn model_types(&self) -> &'static [&'static str] {
        &["llama", "mistral", "qwen2", "qwen3"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        let model_type = f.string("model_type")?.unwrap_or("llama");
        let act = f.string("hidden_act")?.unwrap_or("silu");
        f.refuse_unless("hidden_act", Some(act), &["silu"])?;
        f.refuse_unless("mlp_bias", f.boolean("mlp_bias")?, &[false])?;
        let n_embd = f.size("hidden_size", MAX_EMBD)?;
        let n_head = f.size("num_attention_heads", MAX_EMBD)?;
        let (qkv_bias, o_bias) = match model_type {
            // Qwen2's q, k and v projections always have biases, its o_proj never.
            "qwen2" => (true, false),
            _ => {
                let b = f.boolean("attention_bias")?.unwrap_or(false);
                (b, b)
            }
        };
        let qk_norm = model_type == "qwen3";
        let theta = rope_theta(f, 10_000.0)?;
        let n_positions = f.size("max_position_embeddings", MAX_POSITIONS)?;
        let n_layer = f.size("num_hidden_layers", MAX_LAYERS)?;
        let window = match model_type {
            "qwen2" | "qwen3" if f.boolean("use_sliding_window")? != Some(true) => None,
            _ => f.uint("sliding_window")?,
        };
        let windows = match window {
            // A window as long as the context changes nothing.
            Some(w) if (w as usize) < n_positions => {
                let w = crate::config::in_range("sliding_window", w, MAX_POSITIONS)?;
                // Qwen2 without `layer_types`: the layers from `max_window_layers` on.
                let from = match model_type {
                    "qwen2" | "qwen3" => f.uint("max_window_layers")?.unwrap_or(0) as usize,
                    _ => 0,
                };
                crate::config::layer_windows(f, n_layer, w, |l| l >= from)?
            }
            _ => Vec::new(),
        };
        let head_size = match f.uint("head_dim")? {
            Some(h) => Some(crate::config::in_range("head_dim", h, MAX_EMBD)?),
            None => None,
        };
        Ok(Config {
            family: Family::Llama {
                qkv_bias,
                o_bias,
                qk_norm,
            },
            windows,
            kv_heads: Some(f.size_or("num_key_value_heads", MAX_EMBD, n_head)?),
            head_size,
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Gated,
            rope: Some(Rope {
                theta,
                scaling: rope_scaling(f)?,
                dims: head_size.unwrap_or(n_embd / n_head),
            }),
            n_embd,
            n_layer,
            n_head,
            n_positions,
            n_inner: f.size("intermediate_size", MAX_INNER)?,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: f.number("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            activation: Activation::Silu,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(false),
            eos_token_ids: f.eos_token_ids()?,
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["smollm2-135m", "llama-1b", "qwen3-0.6b"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        // (hidden, layers, heads, kv heads, ffn, vocab, theta, scaling, tied)
        let (n_embd, n_layer, n_head, n_kv_head, n_inner, vocab_size, theta, scaling) = match name {
            "smollm2-135m" => (576, 30, 9, 3, 1536, 49152, 100_000.0, RopeScaling::None),
            // Llama 3.2 1B (its context of 131072; a session uses the default context unless
            // asked for more).
            "llama-1b" => (
                2048,
                16,
                32,
                8,
                8192,
                128_256,
                500_000.0,
                RopeScaling::Llama3 {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192.0,
                },
            ),
            // Qwen3-0.6B: heads of 128 on a hidden size of 1024, its context of 40960.
            "qwen3-0.6b" => (1024, 28, 16, 8, 3072, 151_936, 1e6, RopeScaling::None),
            _ => return None,
        };
        let head_dim = if name == "qwen3-0.6b" { 128 } else { 64 };
        let (n_positions, eos) = match name {
            "llama-1b" => (131_072, 128_001),
            "qwen3-0.6b" => (40_960, 151_645),
            _ => (8192, 0),
        };
        Some(Config {
            family: Family::Llama {
                qkv_bias: false,
                o_bias: false,
                qk_norm: name.starts_with("qwen3"),
            },
            kv_heads: Some(n_kv_head),
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
            n_inner,
            vocab_size,
            layer_norm_epsilon: 1e-5,
            activation: Activation::Silu,
            tie_word_embeddings: true,
            eos_token_ids: vec![eos],
            scale_attn_weights: true,
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
            if o.qkv_bias {
                t.vector(p("self_attn.q_proj.bias"), q);
                t.vector(p("self_attn.k_proj.bias"), kv);
                t.vector(p("self_attn.v_proj.bias"), kv);
            }
            if o.qk_norm {
                t.vector(p("self_attn.q_norm.weight"), h.head_dim);
                t.vector(p("self_attn.k_norm.weight"), h.head_dim);
            }
            t.linear_weight(p("self_attn.o_proj.weight"), q, c);
            if o.o_bias {
                t.vector(p("self_attn.o_proj.bias"), c);
            }
            t.vector(p("post_attention_layernorm.weight"), c);
            let gate_up = [(p("mlp.gate_proj.weight"), f), (p("mlp.up_proj.weight"), f)];
            t.linear_weights_stacked(&gate_up, c);
            t.linear_weight(p("mlp.down_proj.weight"), f, c);
        }
        t.vector("model.norm.weight".into(), c);
        t.untied_head(cfg, "lm_head.weight", c);
        t.generated("rotary table".into(), cfg.n_ctx * h.head_dim);
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let h = cfg.heads();
        let (q, kv) = (h.q_c(), h.kv_c());
        let o = options(cfg);
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
            let o_proj = p("self_attn.o_proj");
            layers.push(Layer {
                attn_norm: up.rms_norm(&p("input_layernorm"), c)?,
                qkv: up.linears_stacked(&qkv_parts, c, o.qkv_bias)?,
                attn_out: match o.o_bias {
                    true => up.linear(&o_proj, q, c)?,
                    false => up.linear_no_bias(&o_proj, q, c)?,
                },
                mlp_norm: up.rms_norm(&p("post_attention_layernorm"), c)?,
                mlp_up: up.linears_stacked(&gate_up, c, false)?,
                mlp_down: up.linear_no_bias(&p("mlp.down_proj"), f, c)?,
                norms: match o.qk_norm {
                    true => vec![
                        ("q_norm", up.rms_norm(&p("self_attn.q_norm"), h.head_dim)?),
                        ("k_norm", up.rms_norm(&p("self_attn.k_norm"), h.head_dim)?),
                    ],
                    false => Vec::new(),
                },
                linears: Vec::new(),
            });
        }
        let final_norm = up.rms_norm("model.norm", c)?;
        let lm_head = up.untied_head(cfg, "lm_head.weight", c)?;
        let rope = cfg
            .rope
            .as_ref()
            .expect("a Llama-family config has rotary positions");
        let freqs = inv_freq(rope.dims, rope.theta, &rope.scaling);
        let table = rope_table(cfg.n_ctx, &freqs);
        let rope = up.upload("rotary table", table.as_flattened())?;
        Ok(Weights {
            rope: Some(rope),
            ..Weights::new(wte, layers, Some(final_norm), lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let (hd, qk_norm) = (cfg.head_dim(), options(cfg).qk_norm);
        f.embed(&a.x, &a.tokens, &w.wte, None); //                x = embed_tokens[tokens]      (T, C)
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); //    ln = RMSNorm1(x) ⁽ᶠ⁾          (T, C)
            f.linear("qkv_proj", &a.qkv, h, &lw.qkv, Out::Set); // qkv = ln·[Wq|Wk|Wv] (+ b)    (T, Q + 2K)
            if qk_norm {
                f.head_norm(&a.qkv, lw.norm("q_norm"), lw.norm("k_norm")); // q, k = RMSNorm per head (Qwen3)
            }
            if let Some(table) = &w.rope {
                f.rope(&a.qkv, table, hd); //                     q, k = rotate(q, k, pos..)
            }
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(q·Kᵀ/√d + mask)·V, by kv group (T, Q)
            f.linear("o_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo
            let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); //     ln = RMSNorm2(x) ⁽ᶠ⁾          (T, C)
            f.linear("gate_up_proj", &a.gate_up, h, &lw.mlp_up, Out::Set); // gu = ln·[Wgate|Wup] (T, 2F)
            f.gated(&a.fc, &a.gate_up, Activation::Silu); //      fc = silu(gate) · up          (T, F)
            f.linear("down_proj", &a.x, &a.fc, &lw.mlp_down, Out::Add); // x += fc·Wdown
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  ln = RMSNorm_f(x) ⁽ᶠ⁾         (T, C)
        f.lm_head(&a.logits, h, w.head(), &w.zeros); //           logits = ln·headᵀ             (R, V)
    }

    /// `llama` (Llama, Mistral, SmolLM2: the converter permutes the q / k rows for its rotary
    /// layout), `qwen2` (stored as the checkpoint has them, with q/k/v biases) and `qwen3`
    /// (as stored, with `attn_q_norm` / `attn_k_norm`).
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["llama", "qwen2", "qwen3"]
    }

    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        let arch = m.arch;
        let permuted = arch == "llama";
        let (n_embd, n_head) = (
            m.required("embedding_length")?,
            m.required("attention.head_count")?,
        );
        c.insert("model_type".into(), json!(arch));
        c.insert("hidden_size".into(), json!(n_embd));
        c.insert(
            "num_hidden_layers".into(),
            json!(m.required("block_count")?),
        );
        c.insert("num_attention_heads".into(), json!(n_head));
        if let Some(kv) = m.uint("attention.head_count_kv")? {
            c.insert("num_key_value_heads".into(), json!(kv));
        }
        let head_dim = match m.uint("attention.key_length")? {
            Some(k) => k,
            None => n_embd / n_head.max(1),
        };
        if let Some(v) = m.uint("attention.value_length")? {
            if v != head_dim {
                return Err(Error::Unsupported(format!(
                    "`{arch}.attention.value_length` = {v} differs from the key length {head_dim}"
                )));
            }
        }
        if let Some(r) = m.uint("rope.dimension_count")? {
            if r != head_dim {
                return Err(Error::Unsupported(format!(
                    "`{arch}.rope.dimension_count` = {r}: rotary positions on part of a {head_dim}-dimension head"
                )));
            }
        }
        c.insert("head_dim".into(), json!(head_dim));
        let ffn = match m.uint("feed_forward_length")? {
            Some(f) => f,
            None => rows_of(m.g, "blk.0.ffn_gate.weight").ok_or_else(|| {
                meta_error(format!("metadata `{arch}.feed_forward_length` is missing"))
            })?,
        };
        c.insert("intermediate_size".into(), json!(ffn));
        c.insert(
            "max_position_embeddings".into(),
            json!(m.required("context_length")?),
        );
        if let Some(e) = m.float("attention.layer_norm_rms_epsilon")? {
            c.insert("rms_norm_eps".into(), json!(e));
        }
        if let Some(t) = m.float("rope.freq_base")? {
            c.insert("rope_theta".into(), json!(t));
        }
        if permuted {
            let bias = m.g.tensors.contains_key("blk.0.attn_q.bias");
            c.insert("attention_bias".into(), json!(bias));
        }
        match m.string("rope.scaling.type")? {
            None | Some("none") => {}
            Some("linear") => {
                let factor = m.float("rope.scaling.factor")?.ok_or_else(|| {
                    meta_error(format!("`{arch}.rope.scaling.factor` is missing"))
                })?;
                c.insert(
                    "rope_scaling".into(),
                    json!({"rope_type": "linear", "factor": factor}),
                );
            }
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "`{arch}.rope.scaling.type` = \"{other}\"; supported: none, linear (and llama3's rope_freqs)"
                )))
            }
        }
        Ok(())
    }

    fn gguf_tensor(
        &self,
        arch: &str,
        cfg: &Config,
        layer: Option<usize>,
        part: &str,
        suffix: &str,
    ) -> Option<Mapped> {
        let own = |p: &str| (p == "ffn_norm").then_some("post_attention_layernorm");
        let mapped = llama_layout(layer, part, suffix, own)?;
        let permuted = arch == "llama";
        let rows = match part {
            "attn_q" if permuted => RowOrder::LlamaRope { heads: cfg.n_head },
            "attn_k" if permuted => RowOrder::LlamaRope {
                heads: cfg.n_kv_head(),
            },
            _ => RowOrder::AsStored,
        };
        Some(Mapped { rows, ..mapped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_scaling_rules_change_the_frequencies_as_hf_does() {
        let plain = inv_freq(16, 10_000.0, &RopeScaling::None);
        assert_eq!(plain.len(), 8);
        assert!((plain[1] - 10_000f64.powf(-2.0 / 16.0)).abs() < 1e-15);
        let linear = inv_freq(16, 10_000.0, &RopeScaling::Linear { factor: 4.0 });
        for (l, p) in linear.iter().zip(&plain) {
            assert!((l - p / 4.0).abs() < 1e-15);
        }
        // The golden Llama fixture's rule (factor 4, low 1, high 4, original 32): the
        // highest frequency is kept, the next blended (HF: 0.3162 → 0.1273), the rest / 4.
        let llama3 = RopeScaling::Llama3 {
            factor: 4.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32.0,
        };
        let scaled = inv_freq(16, 10_000.0, &llama3);
        assert_eq!(scaled[0], plain[0]);
        assert!((plain[1] - 0.3162).abs() < 1e-4 && (scaled[1] - 0.1273).abs() < 1e-4);
        for j in 2..8 {
            assert!((scaled[j] - plain[j] / 4.0).abs() < 1e-15, "{j}");
        }
    }
}
