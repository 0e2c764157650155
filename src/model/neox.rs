//! GPT-NeoX / Pythia (`model_type: gpt_neox`, `GPTNeoXForCausalLM`): rotary positions on the
//! first `rotary_pct` of each head (half-split pairs, base `rotary_emb_base`), a parallel
//! residual `x + attn(LN1(x)) + mlp(LN2(x))` (`use_parallel_residual`) or the sequential
//! pre-LN form, exact-erf GELU, an untied `embed_out` head. The fused `query_key_value`
//! holds q, k and v interleaved per head; it is reordered at upload into the q | k | v layout
//! the kernels read. Pythia's `attention.bias`, `attention.masked_bias` and
//! `attention.rotary_emb.inv_freq` buffers are ignored (the rotation table is made from the
//! config). transformers 5's `rope_theta` / `partial_rotary_factor`, also inside
//! `rope_parameters`, are read as well.

use serde_json::{json, Map, Value as Json};

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::gguf::arch::meta_error;
use super::gguf::{Mapped, Meta, RowOrder};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    Activation, Config, Fields, Rope, RopeScaling, MAX_EMBD, MAX_INNER, MAX_LAYERS, MAX_POSITIONS,
    MAX_VOCAB,
};
use crate::error::Result;
use crate::kernels::rope_table;

pub(crate) struct NeoX;

/// (rotary_dims, rotary_base, parallel_residual) of a NeoX config (0 dimensions: no rotary
/// positions).
fn options(cfg: &Config) -> (usize, f64, bool) {
    let (dims, base) = cfg
        .rope
        .as_ref()
        .map_or((0, 10_000.0), |r| (r.dims, r.theta));
    let parallel = matches!(
        cfg.family,
        Family::NeoX {
            parallel_residual: true
        }
    );
    (dims, base, parallel)
}

/// NeoX's rotary positions: `dims` of each head, no scaling (none without dimensions).
fn rotary(dims: usize, theta: f64) -> Option<Rope> {
    (dims > 0).then_some(Rope {
        theta,
        scaling: RopeScaling::None,
        dims,
    })
}

/// The rotary frequencies of `dims` rotated dimensions: base^(−2j/dims), j < dims/2.
fn inv_freq(dims: usize, base: f64) -> Vec<f64> {
    (0..dims / 2)
        .map(|j| base.powf(-((2 * j) as f64) / dims as f64))
        .collect()
}

impl Arch for NeoX {
    fn model_types(&self) -> &'static [&'static str] {
        &["gpt_neox"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        let rope = f.object("rope_parameters")?;
        let rope = rope.as_ref();
        // A key at the top level, else inside `rope_parameters` (transformers 5).
        let number = |keys: &[&str]| -> Result<Option<f64>> {
            for k in keys {
                if let Some(v) = f.number(k)? {
                    return Ok(Some(v));
                }
                if let Some(v) = rope.map(|r| r.number(k)).transpose()?.flatten() {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let kind = match rope {
            Some(r) => r.string("rope_type")?.map(str::to_string),
            None => None,
        };
        f.refuse_unless("rope_parameters.rope_type", kind.as_deref(), &["default"])?;
        if let Some(s) = f.object("rope_scaling")? {
            let kind = s.string("rope_type")?.or(s.string("type")?);
            f.refuse_unless("rope_scaling.type", kind.or(Some("?")), &["default"])?;
        }
        f.refuse_unless("attention_bias", f.boolean("attention_bias")?, &[true])?;
        let n_embd = f.size("hidden_size", MAX_EMBD)?;
        let n_head = f.size("num_attention_heads", MAX_EMBD)?;
        let pct = number(&["rotary_pct", "partial_rotary_factor"])?.unwrap_or(0.25);
        let head_dim = n_embd / n_head;
        Ok(Config {
            family: Family::NeoX {
                parallel_residual: f.boolean("use_parallel_residual")?.unwrap_or(true),
            },
            rope: rotary(
                // HF: int(head_dim · rotary_pct).
                (head_dim as f64 * pct.clamp(0.0, 1.0)) as usize,
                number(&["rotary_emb_base", "rope_theta"])?.unwrap_or(10_000.0),
            ),
            n_embd,
            n_layer: f.size("num_hidden_layers", MAX_LAYERS)?,
            n_head,
            n_positions: f.size("max_position_embeddings", MAX_POSITIONS)?,
            n_inner: f.size("intermediate_size", MAX_INNER)?,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: f.number("layer_norm_eps")?.unwrap_or(1e-5) as f32,
            activation: Activation::parse(f.string("hidden_act")?.unwrap_or("gelu"))?,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(false),
            eos_token_ids: f.eos_token_ids()?,
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["pythia-160m"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        (name == "pythia-160m").then_some(Config {
            family: Family::NeoX {
                parallel_residual: true,
            },
            rope: rotary(16, 10_000.0),
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_positions: 2048,
            n_inner: 3072,
            vocab_size: 50304,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluErf,
            tie_word_embeddings: false,
            eos_token_ids: vec![0],
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        let buffer = [".attention.bias", ".attention.masked_bias", ".inv_freq"];
        (!buffer.iter().any(|b| name.ends_with(b))).then_some(name)
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let (rotary_dims, _, _) = options(cfg);
        let mut t = TensorList::new();
        t.embedding("gpt_neox.embed_in.weight".into(), v, c);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("gpt_neox.layers.{l}.{s}");
            t.norm(&p("input_layernorm"), c);
            t.linear_weight(p("attention.query_key_value.weight"), c, 3 * c);
            t.vector(p("attention.query_key_value.bias"), 3 * c);
            t.linear_weight(p("attention.dense.weight"), c, c);
            t.vector(p("attention.dense.bias"), c);
            t.norm(&p("post_attention_layernorm"), c);
            t.linear_weight(p("mlp.dense_h_to_4h.weight"), c, f);
            t.vector(p("mlp.dense_h_to_4h.bias"), f);
            t.linear_weight(p("mlp.dense_4h_to_h.weight"), f, c);
            t.vector(p("mlp.dense_4h_to_h.bias"), c);
        }
        t.norm("gpt_neox.final_layer_norm", c);
        t.untied_head(cfg, "embed_out.weight", c);
        if rotary_dims > 0 {
            // The (cos, sin) table made at upload, not read from the file.
            let len = cfg.n_ctx * rotary_dims;
            t.generated("rotary table".into(), len);
        }
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let (rotary_dims, base, _) = options(cfg);
        let hd = cfg.head_dim();
        // query_key_value rows are [head h: q (hd), k (hd), v (hd)] per head; the kernels read
        // q | k | v, each head-major: column j = part·C + h·hd + d ← row h·3hd + part·hd + d.
        let interleaved = |j: usize| {
            let (part, h, d) = (j / c, (j % c) / hd, j % hd);
            h * 3 * hd + part * hd + d
        };
        let wte = up.row_chunks("gpt_neox.embed_in.weight", v, c)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("gpt_neox.layers.{l}.{s}");
            let qkv = p("attention.query_key_value");
            layers.push(Layer {
                attn_norm: up.norm(&p("input_layernorm"), c)?,
                qkv: up.linear_rows(&qkv, c, 3 * c, interleaved)?,
                attn_out: up.linear(&p("attention.dense"), c, c)?,
                mlp_norm: up.norm(&p("post_attention_layernorm"), c)?,
                mlp_up: up.linear(&p("mlp.dense_h_to_4h"), c, f)?,
                mlp_down: up.linear(&p("mlp.dense_4h_to_h"), f, c)?,
                norms: Vec::new(),
                linears: Vec::new(),
            });
        }
        let final_norm = up.norm("gpt_neox.final_layer_norm", c)?;
        let lm_head = up.untied_head(cfg, "embed_out.weight", c)?;
        let rope = match rotary_dims {
            0 => None,
            d => {
                let table = rope_table(cfg.n_ctx, &inv_freq(d, base));
                Some(up.upload("rotary table", table.as_flattened())?)
            }
        };
        Ok(Weights {
            rope,
            ..Weights::new(wte, layers, Some(final_norm), lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let (rotary_dims, _, parallel) = options(cfg);
        let act = Out::Act(cfg.activation);
        f.embed(&a.x, &a.tokens, &w.wte, None); //                x = embed_in[tokens]          (T, C)
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            if parallel {
                // x += attn(LN1(x)) + mlp(LN2(x)): both norms read the layer's input, so the
                // MLP's first half runs before attention changes x.
                let h2 = f.pre_norm(&a.ln2, &a.x, &lw.mlp_norm); // ln2 = LN2(x) ⁽ᶠ⁾            (T, C)
                f.linear("dense_h_to_4h", &a.fc, h2, &lw.mlp_up, act); // fc = gelu(ln2·W1 + b1) (T, F)
            }
            let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); //    ln = LN1(x) ⁽ᶠ⁾               (T, C)
            f.linear("query_key_value", &a.qkv, h, &lw.qkv, Out::Set); // qkv = ln·Wqkv + b     (T, 3C)
            if let Some(table) = &w.rope {
                f.rope(&a.qkv, table, rotary_dims); //            q, k = rotate(q, k, pos..)
            }
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(q·Kᵀ/√d + mask)·V (T, C)
            f.linear("dense", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo + bo
            if !parallel {
                let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); // ln = LN2(x) ⁽ᶠ⁾               (T, C)
                f.linear("dense_h_to_4h", &a.fc, h, &lw.mlp_up, act); // fc = gelu(ln·W1 + b1)  (T, F)
            }
            f.linear("dense_4h_to_h", &a.x, &a.fc, &lw.mlp_down, Out::Add); // x += fc·W2 + b2
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  ln = LN_f(x) ⁽ᶠ⁾              (T, C)
        f.lm_head(&a.logits, h, w.head(), &w.zeros); //           logits = ln·embed_outᵀ        (R, V)
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["gptneox"]
    }

    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        c.insert("model_type".into(), json!("gpt_neox"));
        c.insert("hidden_size".into(), json!(m.required("embedding_length")?));
        c.insert(
            "num_hidden_layers".into(),
            json!(m.required("block_count")?),
        );
        c.insert(
            "num_attention_heads".into(),
            json!(m.required("attention.head_count")?),
        );
        c.insert(
            "max_position_embeddings".into(),
            json!(m.required("context_length")?),
        );
        c.insert(
            "intermediate_size".into(),
            json!(m.required("feed_forward_length")?),
        );
        if let Some(e) = m.float("attention.layer_norm_epsilon")? {
            c.insert("layer_norm_eps".into(), json!(e));
        }
        // `rope.dimension_count` sets the exact dimensions after parsing (the config reader's
        // rule would round rotary_pct · head_dim); without it, HF's default of a quarter.
        let pct = if m.uint("rope.dimension_count")?.is_some() {
            1.0
        } else {
            0.25
        };
        c.insert("rotary_pct".into(), json!(pct));
        if let Some(t) = m.float("rope.freq_base")? {
            c.insert("rotary_emb_base".into(), json!(t));
        }
        let parallel = match m.raw("use_parallel_residual") {
            None => true,
            Some((full, v)) => v
                .as_bool()
                .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a boolean")))?,
        };
        c.insert("use_parallel_residual".into(), json!(parallel));
        c.insert("hidden_act".into(), json!("gelu"));
        Ok(())
    }

    /// The converter regroups `query_key_value`'s rows from per head (q, k, v) to q | k | v.
    fn gguf_tensor(
        &self,
        _arch: &str,
        cfg: &Config,
        layer: Option<usize>,
        part: &str,
        suffix: &str,
    ) -> Option<Mapped> {
        let Some(l) = layer else {
            let n = match part {
                "token_embd" => "gpt_neox.embed_in",
                "output_norm" => "gpt_neox.final_layer_norm",
                "output" => "embed_out",
                _ => return None,
            };
            return Some(Mapped::plain(format!("{n}.{suffix}")));
        };
        let n = match part {
            "attn_norm" => "input_layernorm",
            "attn_qkv" => "attention.query_key_value",
            "attn_output" => "attention.dense",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_up" => "mlp.dense_h_to_4h",
            "ffn_down" => "mlp.dense_4h_to_h",
            _ => return None,
        };
        let rows = match part {
            "attn_qkv" => RowOrder::NeoxQkv { heads: cfg.n_head },
            _ => RowOrder::AsStored,
        };
        Some(Mapped {
            rows,
            ..Mapped::plain(format!("gpt_neox.layers.{l}.{n}.{suffix}"))
        })
    }
}
