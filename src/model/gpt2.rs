//! GPT-2 (`model_type: gpt2`, `GPT2LMHeadModel`): pre-LN blocks, learned positions, GPT-2's
//! `Conv1D` weights stored (in, out), a final LayerNorm, the LM head tied to `wte` or
//! `lm_head.weight`. Tensor names as OpenAI's files have them (`h.0.attn.c_attn.weight`) or
//! with `save_pretrained`'s `transformer.` prefix; the `attn.bias` / `attn.masked_bias`
//! buffers are ignored.

use serde_json::{json, Map, Value as Json};

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::gguf::{rows_of, Mapped, Meta};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    Activation, Config, Fields, MAX_EMBD, MAX_INNER, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use crate::error::{Error, Result};

pub(crate) struct Gpt2;

impl Arch for Gpt2 {
    fn model_types(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        let archs = f.get("architectures").and_then(|v| v.as_array());
        for a in archs.into_iter().flatten() {
            let a = a.as_str().map_or_else(|| a.to_string(), str::to_string);
            if !a.starts_with("GPT2") {
                return Err(Error::Unsupported(format!(
                    "architecture `{a}` with model_type gpt2; supported: GPT2LMHeadModel"
                )));
            }
        }
        if f.boolean("scale_attn_by_inverse_layer_idx")? == Some(true) {
            return Err(Error::Unsupported(
                "`scale_attn_by_inverse_layer_idx` = true in config.json; supported: false".into(),
            ));
        }
        if f.boolean("reorder_and_upcast_attn")? == Some(true) {
            log::debug!("reorder_and_upcast_attn is implied: attention is computed in f32");
        }
        let n_embd = f.size("n_embd", MAX_EMBD)?;
        Ok(Config {
            family: Family::Gpt2,
            n_embd,
            n_layer: f.size("n_layer", MAX_LAYERS)?,
            n_head: f.size("n_head", MAX_EMBD)?,
            n_positions: f.size("n_positions", MAX_POSITIONS)?,
            n_inner: f.size_or("n_inner", MAX_INNER, 4 * n_embd)?,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: f.number("layer_norm_epsilon")?.unwrap_or(1e-5) as f32,
            activation: Activation::parse(f.string("activation_function")?.unwrap_or("gelu_new"))?,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(true),
            eos_token_ids: f.eos_token_ids()?,
            scale_attn_weights: f.boolean("scale_attn_weights")?.unwrap_or(true),
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        let (n_embd, n_layer, n_head) = match name {
            "gpt2" => (768, 12, 12),
            "gpt2-medium" => (1024, 24, 16),
            "gpt2-large" => (1280, 36, 20),
            "gpt2-xl" => (1600, 48, 25),
            _ => return None,
        };
        Some(Config {
            family: Family::Gpt2,
            n_embd,
            n_layer,
            n_head,
            n_positions: 1024,
            n_inner: 4 * n_embd,
            vocab_size: 50257,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            eos_token_ids: vec![50256],
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        let name = name.strip_prefix("transformer.").unwrap_or(name);
        let mask = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
        (!mask).then_some(name)
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let mut t = TensorList::new();
        t.embedding("wte.weight".into(), v, c);
        t.table("wpe.weight".into(), cfg.n_positions, c, cfg.n_positions);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            t.norm(&p("ln_1"), c);
            t.conv1d_weight(p("attn.c_attn.weight"), c, 3 * c);
            t.vector(p("attn.c_attn.bias"), 3 * c);
            t.conv1d_weight(p("attn.c_proj.weight"), c, c);
            t.vector(p("attn.c_proj.bias"), c);
            t.norm(&p("ln_2"), c);
            t.conv1d_weight(p("mlp.c_fc.weight"), c, f);
            t.vector(p("mlp.c_fc.bias"), f);
            t.conv1d_weight(p("mlp.c_proj.weight"), f, c);
            t.vector(p("mlp.c_proj.bias"), c);
        }
        t.norm("ln_f", c);
        t.untied_head(cfg, "lm_head.weight", c);
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v, p) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_positions);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        let wte = up.row_chunks("wte.weight", v, c)?;
        let wpe = up.table("wpe.weight", p, c, 0, p)?;
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            layers.push(Layer {
                attn_norm: up.norm(&p("ln_1"), c)?,
                qkv: up.conv1d(&p("attn.c_attn"), c, 3 * c)?,
                attn_out: up.conv1d(&p("attn.c_proj"), c, c)?,
                mlp_norm: up.norm(&p("ln_2"), c)?,
                mlp_up: up.conv1d(&p("mlp.c_fc"), c, f)?,
                mlp_down: up.conv1d(&p("mlp.c_proj"), f, c)?,
                norms: Vec::new(),
                linears: Vec::new(),
            });
        }
        let final_norm = up.norm("ln_f", c)?;
        let lm_head = up.untied_head(cfg, "lm_head.weight", c)?;
        Ok(Weights {
            wpe: Some(wpe),
            ..Weights::new(wte, layers, Some(final_norm), lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let act = Out::Act(cfg.activation);
        f.embed(&a.x, &a.tokens, &w.wte, w.wpe.as_ref()); //    x = wte[tokens] + wpe[pos..]  (T, C)
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); //    ln = LN1(x) ⁽ᶠ⁾               (T, C)
            f.linear("c_attn", &a.qkv, h, &lw.qkv, Out::Set); //  qkv = ln·Wqkv + b             (T, 3C)
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(q·Kᵀ/√d + mask)·V (T, C)
            f.linear("attn_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo + bo
            let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); //     ln = LN2(x) ⁽ᶠ⁾               (T, C)
            f.linear("c_fc", &a.fc, h, &lw.mlp_up, act); //       fc = gelu(ln·W1 + b1)         (T, F)
            f.linear("mlp_proj", &a.x, &a.fc, &lw.mlp_down, Out::Add); // x += fc·W2 + b2
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  ln = LN_f(x) ⁽ᶠ⁾              (T, C)
        f.lm_head(&a.logits, h, w.head(), &w.zeros); //           logits = ln·wteᵀ              (R, V)
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        let ctx = m.required("context_length")?;
        c.insert("model_type".into(), json!("gpt2"));
        c.insert("n_embd".into(), json!(m.required("embedding_length")?));
        c.insert("n_layer".into(), json!(m.required("block_count")?));
        c.insert("n_head".into(), json!(m.required("attention.head_count")?));
        // The position table's rows are the real n_positions (the converter writes `n_ctx` as
        // the context length).
        let positions = rows_of(m.g, "position_embd.weight").unwrap_or(ctx);
        if positions != ctx {
            log::info!(
                "gpt2.context_length = {ctx} but position_embd has {positions} rows: using {positions}"
            );
        }
        c.insert("n_positions".into(), json!(positions));
        // The converter writes 4·n_embd whatever n_inner was: the tensor knows.
        let inner = match rows_of(m.g, "blk.0.ffn_up.weight") {
            Some(r) => r,
            None => m.required("feed_forward_length")?,
        };
        c.insert("n_inner".into(), json!(inner));
        if let Some(e) = m.float("attention.layer_norm_epsilon")? {
            c.insert("layer_norm_epsilon".into(), json!(e));
        }
        c.insert("activation_function".into(), json!("gelu_new"));
        Ok(())
    }

    /// llama.cpp stores `Conv1D` weights transposed, as (out, in) rows.
    fn gguf_tensor(
        &self,
        _arch: &str,
        _cfg: &Config,
        layer: Option<usize>,
        part: &str,
        suffix: &str,
    ) -> Option<Mapped> {
        let Some(l) = layer else {
            let n = match part {
                "token_embd" => "wte",
                "position_embd" => "wpe",
                "output_norm" => "ln_f",
                "output" => "lm_head",
                _ => return None,
            };
            return Some(Mapped::plain(format!("{n}.{suffix}")));
        };
        let n = match part {
            "attn_norm" => "ln_1",
            "attn_qkv" => "attn.c_attn",
            "attn_output" => "attn.c_proj",
            "ffn_norm" => "ln_2",
            "ffn_up" => "mlp.c_fc",
            "ffn_down" => "mlp.c_proj",
            _ => return None,
        };
        Some(Mapped {
            transposed: suffix == "weight" && !n.starts_with("ln"),
            ..Mapped::plain(format!("h.{l}.{n}.{suffix}"))
        })
    }
}
