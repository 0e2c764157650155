//! GPT-1 (`model_type: openai-gpt`, `OpenAIGPTLMHeadModel`): the original Transformer's
//! post-LN blocks, `x = LN1(x + attn(x)); x = LN2(x + mlp(x))`, learned positions, no final
//! LayerNorm, the LM head tied to `tokens_embed`. `Conv1D` weights stored (in, out) as in
//! GPT-2; names with or without `save_pretrained`'s `transformer.` prefix.

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{Activation, Config, Fields, MAX_EMBD, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB};
use crate::error::{Error, Result};

pub(crate) struct Gpt1;

impl Arch for Gpt1 {
    fn model_types(&self) -> &'static [&'static str] {
        &["openai-gpt"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        // HF's OpenAIGPT maps `afn` "gelu" to the tanh approximation (its `gelu_new`).
        let activation = match f.string("afn")?.unwrap_or("gelu") {
            "gelu" | "gelu_new" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::Unsupported(format!(
                    "`afn` = \"{other}\" in config.json; supported: gelu, gelu_new, relu"
                )))
            }
        };
        let n_embd = f.size("n_embd", MAX_EMBD)?;
        Ok(Config {
            family: Family::Gpt1,
            n_embd,
            n_layer: f.size("n_layer", MAX_LAYERS)?,
            n_head: f.size("n_head", MAX_EMBD)?,
            n_positions: f.size("n_positions", MAX_POSITIONS)?,
            n_inner: 4 * n_embd,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            layer_norm_epsilon: f.number("layer_norm_epsilon")?.unwrap_or(1e-5) as f32,
            activation,
            // OpenAIGPTLMHeadModel always ties its head to the token embedding.
            tie_word_embeddings: true,
            eos_token_ids: f.eos_token_ids()?,
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["openai-gpt"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        (name == "openai-gpt").then_some(Config {
            family: Family::Gpt1,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_positions: 512,
            n_inner: 3072,
            vocab_size: 40478,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            eos_token_ids: vec![],
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        let name = name.strip_prefix("transformer.").unwrap_or(name);
        (!name.ends_with(".attn.bias")).then_some(name)
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let mut t = TensorList::new();
        t.embedding("tokens_embed.weight".into(), v, c);
        t.table(
            "positions_embed.weight".into(),
            cfg.n_positions,
            c,
            cfg.n_positions,
        );
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            t.conv1d_weight(p("attn.c_attn.weight"), c, 3 * c);
            t.vector(p("attn.c_attn.bias"), 3 * c);
            t.conv1d_weight(p("attn.c_proj.weight"), c, c);
            t.vector(p("attn.c_proj.bias"), c);
            t.norm(&p("ln_1"), c);
            t.conv1d_weight(p("mlp.c_fc.weight"), c, f);
            t.vector(p("mlp.c_fc.bias"), f);
            t.conv1d_weight(p("mlp.c_proj.weight"), f, c);
            t.vector(p("mlp.c_proj.bias"), c);
            t.norm(&p("ln_2"), c);
        }
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v, p) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_positions);
        let wte = up.row_chunks("tokens_embed.weight", v, c)?;
        let wpe = up.table("positions_embed.weight", p, c, 0, p)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            layers.push(Layer {
                qkv: up.conv1d(&p("attn.c_attn"), c, 3 * c)?,
                attn_out: up.conv1d(&p("attn.c_proj"), c, c)?,
                attn_norm: up.norm(&p("ln_1"), c)?,
                mlp_up: up.conv1d(&p("mlp.c_fc"), c, f)?,
                mlp_down: up.conv1d(&p("mlp.c_proj"), f, c)?,
                mlp_norm: up.norm(&p("ln_2"), c)?,
                norms: Vec::new(),
                linears: Vec::new(),
            });
        }
        Ok(Weights {
            wpe: Some(wpe),
            ..Weights::new(wte, layers, None, None, up.zeros(cfg)?)
        })
    }

    /// Post-LN: the residual stream alternates between `x` and `ln` within a layer (a
    /// LayerNorm's output is the next residual), and is back in `x` after it.
    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let act = Out::Act(cfg.activation);
        f.embed(&a.x, &a.tokens, &w.wte, w.wpe.as_ref()); //    x = tokens_embed[tokens] + positions_embed[pos..]
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            f.linear("c_attn", &a.qkv, &a.x, &lw.qkv, Out::Set); // qkv = x·Wqkv + b            (T, 3C)
            f.kv_store(&a.qkv, cache); //                         cache[pos..pos+T] = k, v ⁽ᶠ⁾
            f.attention(&a.att, &a.qkv, cache); //                att = softmax(q·Kᵀ/√d + mask)·V (T, C)
            f.linear("attn_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo + bo
            f.layer_norm(&a.ln, &a.x, &lw.attn_norm); //          h = LN1(x)                    (T, C)
            f.linear("c_fc", &a.fc, &a.ln, &lw.mlp_up, act); //   fc = gelu(h·W1 + b1)          (T, F)
            f.linear("mlp_proj", &a.ln, &a.fc, &lw.mlp_down, Out::Add); // h += fc·W2 + b2
            f.layer_norm(&a.x, &a.ln, &lw.mlp_norm); //           x = LN2(h)                    (T, C)
        }
        f.lm_head(&a.logits, &a.x, w.head(), &w.zeros); //        logits = x·tokens_embedᵀ      (R, V)
    }
}
