//! OPT (`model_type: opt`, `OPTForCausalLM`): ReLU feed-forward, learned positions with HF's
//! offset of 2 (row `pos + 2` of `embed_positions`), separate q/k/v/out projections stored
//! (out, in) and fused into one qkv matrix at upload. Pre-LN (`do_layer_norm_before: true`,
//! most sizes, with a final LayerNorm) or post-LN (opt-350m, without one); where
//! `word_embed_proj_dim` differs from `hidden_size`, `project_in` / `project_out` map the
//! embedding width to the hidden size and back. Tensor names with `save_pretrained`'s
//! `model.` prefix or without it, as the facebook/opt-* files have them.

use super::family::{Arch, Family};
use super::forward::{Activations, Forward, Out};
use super::tensors::{Stored, TensorList};
use super::upload::Uploader;
use super::weights::{Layer, Weights};
use crate::config::{
    Activation, Config, Fields, MAX_EMBD, MAX_INNER, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use crate::error::Result;

pub(crate) struct Opt;

/// HF's `OPTLearnedPositionalEmbedding` offset: position p reads row p + 2.
const POSITION_OFFSET: usize = 2;

/// (pre_norm, final_norm, embedding width) of an OPT config.
fn options(cfg: &Config) -> (bool, bool, usize) {
    match cfg.family {
        Family::Opt {
            pre_norm,
            final_norm,
        } => (pre_norm, final_norm, cfg.embedding_dim()),
        _ => (true, true, cfg.embedding_dim()),
    }
}

impl Arch for Opt {
    fn model_types(&self) -> &'static [&'static str] {
        &["opt"]
    }

    fn config(&self, f: &Fields) -> Result<Config> {
        f.refuse_unless("enable_bias", f.boolean("enable_bias")?, &[true])?;
        let affine = f.boolean("layer_norm_elementwise_affine")?;
        f.refuse_unless("layer_norm_elementwise_affine", affine, &[true])?;
        let n_embd = f.size("hidden_size", MAX_EMBD)?;
        let pre_norm = f.boolean("do_layer_norm_before")?.unwrap_or(true);
        let removed = f.boolean("_remove_final_layer_norm")?.unwrap_or(false);
        Ok(Config {
            family: Family::Opt {
                pre_norm,
                final_norm: pre_norm && !removed,
            },
            embedding_width: Some(f.size_or("word_embed_proj_dim", MAX_EMBD, n_embd)?)
                .filter(|&e| e != n_embd),
            n_embd,
            n_layer: f.size("num_hidden_layers", MAX_LAYERS)?,
            n_head: f.size("num_attention_heads", MAX_EMBD)?,
            n_positions: f.size("max_position_embeddings", MAX_POSITIONS)?,
            n_inner: f.size("ffn_dim", MAX_INNER)?,
            vocab_size: f.size("vocab_size", MAX_VOCAB)?,
            // OPT's LayerNorms use PyTorch's default epsilon; the config has no key for it.
            layer_norm_epsilon: 1e-5,
            activation: Activation::parse(f.string("activation_function")?.unwrap_or("relu"))?,
            tie_word_embeddings: f.boolean("tie_word_embeddings")?.unwrap_or(true),
            eos_token_ids: f.eos_token_ids()?,
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn presets(&self) -> &'static [&'static str] {
        &["opt-125m", "opt-350m"]
    }

    fn preset(&self, name: &str) -> Option<Config> {
        let (n_embd, n_layer, n_head, proj_dim, pre_norm) = match name {
            "opt-125m" => (768, 12, 12, 768, true),
            "opt-350m" => (1024, 24, 16, 512, false),
            _ => return None,
        };
        Some(Config {
            family: Family::Opt {
                pre_norm,
                final_norm: pre_norm,
            },
            embedding_width: Some(proj_dim).filter(|&e| e != n_embd),
            n_embd,
            n_layer,
            n_head,
            n_positions: 2048,
            n_inner: 4 * n_embd,
            vocab_size: 50272,
            layer_norm_epsilon: 1e-5,
            activation: Activation::Relu,
            tie_word_embeddings: true,
            eos_token_ids: vec![2],
            scale_attn_weights: true,
            ..Config::blank()
        })
    }

    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        Some(name.strip_prefix("model.").unwrap_or(name))
    }

    fn tensors(&self, cfg: &Config) -> TensorList {
        let (c, f, v, p) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_positions);
        let (_, final_norm, e) = options(cfg);
        let mut t = TensorList::new();
        t.embedding("decoder.embed_tokens.weight".into(), v, e);
        t.table(
            "decoder.embed_positions.weight".into(),
            p + POSITION_OFFSET,
            c,
            p,
        );
        if e != c {
            t.linear_weight("decoder.project_in.weight".into(), e, c);
            t.linear_weight("decoder.project_out.weight".into(), c, e);
        }
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("decoder.layers.{l}.{s}");
            let qkv = Stored::Matrix { k: c, n: 3 * c };
            t.push(p("self_attn.q_proj.weight"), vec![c, c], qkv);
            t.push(
                p("self_attn.q_proj.bias"),
                vec![c],
                Stored::F32 { len: 3 * c },
            );
            for x in ["k", "v"] {
                t.within(p(&format!("self_attn.{x}_proj.weight")), vec![c, c]);
                t.within(p(&format!("self_attn.{x}_proj.bias")), vec![c]);
            }
            t.linear_weight(p("self_attn.out_proj.weight"), c, c);
            t.vector(p("self_attn.out_proj.bias"), c);
            t.norm(&p("self_attn_layer_norm"), c);
            t.linear_weight(p("fc1.weight"), c, f);
            t.vector(p("fc1.bias"), f);
            t.linear_weight(p("fc2.weight"), f, c);
            t.vector(p("fc2.bias"), c);
            t.norm(&p("final_layer_norm"), c);
        }
        if final_norm {
            t.norm("decoder.final_layer_norm", c);
        }
        t.untied_head(cfg, "lm_head.weight", e);
        t
    }

    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights> {
        let (c, f, v, p) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_positions);
        let (_, final_norm, e) = options(cfg);
        let wte = up.row_chunks("decoder.embed_tokens.weight", v, e)?;
        let wpe = up.table(
            "decoder.embed_positions.weight",
            p + POSITION_OFFSET,
            c,
            POSITION_OFFSET,
            p,
        )?;
        let (project_in, project_out) = if e != c {
            (
                Some(up.linear_no_bias("decoder.project_in", e, c)?),
                Some(up.linear_no_bias("decoder.project_out", c, e)?),
            )
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("decoder.layers.{l}.{s}");
            let (q, k, v) = (
                p("self_attn.q_proj"),
                p("self_attn.k_proj"),
                p("self_attn.v_proj"),
            );
            layers.push(Layer {
                qkv: up.linears_stacked(&[(&q, c), (&k, c), (&v, c)], c, true)?,
                attn_out: up.linear(&p("self_attn.out_proj"), c, c)?,
                attn_norm: up.norm(&p("self_attn_layer_norm"), c)?,
                mlp_up: up.linear(&p("fc1"), c, f)?,
                mlp_down: up.linear(&p("fc2"), f, c)?,
                mlp_norm: up.norm(&p("final_layer_norm"), c)?,
                norms: Vec::new(),
                linears: Vec::new(),
            });
        }
        let final_norm = match final_norm {
            true => Some(up.norm("decoder.final_layer_norm", c)?),
            false => None,
        };
        let lm_head = up.untied_head(cfg, "lm_head.weight", e)?;
        Ok(Weights {
            wpe: Some(wpe),
            project_in,
            project_out,
            ..Weights::new(wte, layers, final_norm, lm_head, up.zeros(cfg)?)
        })
    }

    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights) {
        let (pre_norm, _, _) = options(cfg);
        let act = Out::Act(cfg.activation);
        match (&w.project_in, &w.wpe) {
            (Some(proj), Some(wpe)) => {
                f.embed(&a.emb, &a.tokens, &w.wte, None); //      e = embed_tokens[tokens]      (T, E)
                f.linear("project_in", &a.x, &a.emb, proj, Out::Set); // x = e·W_in             (T, C)
                f.add_positions(&a.x, wpe); //                    x += embed_positions[pos + 2..]
            }
            _ => f.embed(&a.x, &a.tokens, &w.wte, w.wpe.as_ref()), // x = embed_tokens[tokens] + embed_positions[pos + 2..]
        }
        for (l, lw) in w.layers.iter().enumerate() {
            let cache = &a.kv_cache[l];
            if pre_norm {
                let h = f.pre_norm(&a.ln, &a.x, &lw.attn_norm); // ln = LN1(x) ⁽ᶠ⁾               (T, C)
                f.linear("qkv_proj", &a.qkv, h, &lw.qkv, Out::Set); // qkv = ln·Wqkv + b        (T, 3C)
                f.kv_store(&a.qkv, cache); //                     cache[pos..pos+T] = k, v ⁽ᶠ⁾
                f.attention(&a.att, &a.qkv, cache); //            att = softmax(q·Kᵀ/√d + mask)·V (T, C)
                f.linear("out_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo + bo
                let h = f.pre_norm(&a.ln, &a.x, &lw.mlp_norm); // ln = LN2(x) ⁽ᶠ⁾               (T, C)
                f.linear("fc1", &a.fc, h, &lw.mlp_up, act); //    fc = relu(ln·W1 + b1)         (T, F)
                f.linear("fc2", &a.x, &a.fc, &lw.mlp_down, Out::Add); // x += fc·W2 + b2
            } else {
                // Post-LN: the residual stream moves to `ln` mid-layer and back to `x`.
                f.linear("qkv_proj", &a.qkv, &a.x, &lw.qkv, Out::Set); // qkv = x·Wqkv + b      (T, 3C)
                f.kv_store(&a.qkv, cache); //                     cache[pos..pos+T] = k, v ⁽ᶠ⁾
                f.attention(&a.att, &a.qkv, cache); //            att = softmax(q·Kᵀ/√d + mask)·V (T, C)
                f.linear("out_proj", &a.x, &a.att, &lw.attn_out, Out::Add); // x += att·Wo + bo
                f.layer_norm(&a.ln, &a.x, &lw.attn_norm); //      h = LN1(x)                    (T, C)
                f.linear("fc1", &a.fc, &a.ln, &lw.mlp_up, act); // fc = relu(h·W1 + b1)         (T, F)
                f.linear("fc2", &a.ln, &a.fc, &lw.mlp_down, Out::Add); // h += fc·W2 + b2
                f.layer_norm(&a.x, &a.ln, &lw.mlp_norm); //       x = LN2(h)                    (T, C)
            }
        }
        let h = f.final_norm(&a.ln, &a.x, w); //                  h = LN_f(x) ⁽ᶠ⁾, or x          (T, C)
        match &w.project_out {
            Some(proj) => {
                f.linear("project_out", &a.emb, h, proj, Out::Set); // e = h·W_out              (T, E)
                f.lm_head(&a.logits, &a.emb, w.head(), &w.zeros); // logits = e·embed_tokensᵀ  (R, V)
            }
            None => f.lm_head(&a.logits, h, w.head(), &w.zeros), //  logits = h·embed_tokensᵀ  (R, V)
        }
    }
}
