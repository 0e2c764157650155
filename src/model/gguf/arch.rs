//! The architectures wgpt reads from GGUF files (`gpt2`, `llama`, `qwen2`, `gptneox`): their
//! hyper-parameters from the metadata, written as the `config.json` Hugging Face would have
//! (so the family's own config reader and every check of it apply), and their tensor names
//! and layouts as llama.cpp's `convert_hf_to_gguf.py` writes them, mapped back to the names
//! and row orders of the Hugging Face checkpoint each family's tensor list uses.
//!
//! What the converter changes, and how it is undone:
//! - `llama`: the rows of `q_proj` / `k_proj` (weights and biases) are permuted per head from
//!   the half-split rotary layout to the interleaved one (`LlamaModel.permute`); read back
//!   with [`RowOrder::LlamaRope`]. Llama 3's rope scaling is the `rope_freqs` tensor.
//! - `qwen2`: written as the checkpoint has it (no permutation), with q/k/v biases.
//! - `gptneox`: `query_key_value`'s rows go from per-head (q, k, v) to q | k | v; read back
//!   with [`RowOrder::NeoxQkv`].
//! - `gpt2`: `Conv1D` weights are transposed to (out, in) ([`Mapped::transposed`]), the
//!   attention mask buffers dropped, and `feed_forward_length` is written as 4·n_embd
//!   whatever `n_inner` was, so sizes come from the tensors where the metadata is unreliable.

use serde_json::{json, Map, Value as Json};

use crate::config::{Config, RopeScaling};
use crate::error::{Error, Result};
use crate::format::gguf::reader::{Gguf, Value};

/// A GGUF architecture wgpt runs, and the family that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gpt2,
    /// `llama` (q/k rows permuted by the converter) or `qwen2` (not permuted).
    Llama {
        permuted: bool,
    },
    NeoX,
}

/// The `general.architecture` values wgpt supports.
pub(crate) const SUPPORTED: &str = "gpt2, llama, qwen2, gptneox";

impl Kind {
    pub fn of(arch: &str) -> Option<Self> {
        Some(match arch {
            "gpt2" => Kind::Gpt2,
            "llama" => Kind::Llama { permuted: true },
            "qwen2" => Kind::Llama { permuted: false },
            "gptneox" => Kind::NeoX,
            _ => return None,
        })
    }
}

/// How the rows of a stored tensor map to the checkpoint's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowOrder {
    AsStored,
    /// llama.cpp's rotary permutation within each of `heads` heads: stored row
    /// h·hd + 2i + j holds checkpoint row h·hd + j·hd/2 + i.
    LlamaRope {
        heads: usize,
    },
    /// GPT-NeoX's fused qkv: stored row part·C + h·hd + d holds checkpoint row
    /// h·3hd + part·hd + d (C = heads·hd).
    NeoxQkv {
        heads: usize,
    },
}

impl RowOrder {
    /// The stored row that checkpoint row `r` (of `rows`) comes from.
    pub fn source(self, r: usize, rows: usize) -> usize {
        match self {
            RowOrder::AsStored => r,
            RowOrder::LlamaRope { heads } => {
                let hd = rows / heads;
                let (h, w) = (r / hd, r % hd);
                let (j, i) = (w / (hd / 2), w % (hd / 2));
                h * hd + 2 * i + j
            }
            RowOrder::NeoxQkv { heads } => {
                let hd = rows / (3 * heads);
                let c = heads * hd;
                let (h, w) = (r / (3 * hd), r % (3 * hd));
                let (part, d) = (w / hd, w % hd);
                part * c + h * hd + d
            }
        }
    }

    /// Whether `rows` splits into this order's heads.
    pub fn fits(self, rows: usize) -> bool {
        match self {
            RowOrder::AsStored => true,
            RowOrder::LlamaRope { heads } => heads > 0 && rows.is_multiple_of(2 * heads),
            RowOrder::NeoxQkv { heads } => heads > 0 && rows.is_multiple_of(3 * heads),
        }
    }
}

/// A file tensor under the name the family's tensor list uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub name: String,
    /// The stored matrix is the transpose of the listed one (GPT-2's `Conv1D` weights).
    pub transposed: bool,
    pub rows: RowOrder,
}

/// The checkpoint name of GGUF tensor `name`, or `None` for tensors wgpt does not read
/// (`rope_freqs`, read into the config instead, and anything unknown).
pub(crate) fn map_name(kind: Kind, cfg: &Config, name: &str) -> Option<Mapped> {
    let plain = |n: String| Mapped {
        name: n,
        transposed: false,
        rows: RowOrder::AsStored,
    };
    let (base, suffix) = name.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let Some(rest) = base.strip_prefix("blk.") else {
        let n = match (kind, base) {
            (Kind::Gpt2, "token_embd") => "wte",
            (Kind::Gpt2, "position_embd") => "wpe",
            (Kind::Gpt2, "output_norm") => "ln_f",
            (Kind::Llama { .. }, "token_embd") => "model.embed_tokens",
            (Kind::Llama { .. }, "output_norm") => "model.norm",
            (Kind::NeoX, "token_embd") => "gpt_neox.embed_in",
            (Kind::NeoX, "output_norm") => "gpt_neox.final_layer_norm",
            (Kind::NeoX, "output") => "embed_out",
            (_, "output") => "lm_head",
            _ => return None,
        };
        return Some(plain(format!("{n}.{suffix}")));
    };
    let (layer, part) = rest.split_once('.')?;
    let l: usize = layer.parse().ok()?;
    match kind {
        Kind::Gpt2 => {
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
                ..plain(format!("h.{l}.{n}.{suffix}"))
            })
        }
        Kind::Llama { permuted } => {
            let n = match part {
                "attn_norm" => "input_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            let rows = match part {
                "attn_q" if permuted => RowOrder::LlamaRope { heads: cfg.n_head },
                "attn_k" if permuted => RowOrder::LlamaRope {
                    heads: cfg.n_kv_head(),
                },
                _ => RowOrder::AsStored,
            };
            Some(Mapped {
                rows,
                ..plain(format!("model.layers.{l}.{n}.{suffix}"))
            })
        }
        Kind::NeoX => {
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
                ..plain(format!("gpt_neox.layers.{l}.{n}.{suffix}"))
            })
        }
    }
}

/// Reads `{arch}.*` metadata with errors that name the key.
struct Meta<'g> {
    g: &'g Gguf,
    arch: &'g str,
}

impl Meta<'_> {
    fn raw(&self, key: &str) -> Option<(String, &Value)> {
        let full = format!("{}.{key}", self.arch);
        let v = self.g.get(&full)?;
        Some((full, v))
    }

    /// A whole number; a per-layer array is accepted when all its entries agree.
    fn uint(&self, key: &str) -> Result<Option<u64>> {
        let Some((full, v)) = self.raw(key) else {
            return Ok(None);
        };
        let one = match v.as_array() {
            Some(a) => {
                let first = a.first().and_then(Value::as_u64);
                match first {
                    Some(f) if a.iter().all(|x| x.as_u64() == Some(f)) => Some(f),
                    _ => {
                        return Err(Error::Unsupported(format!(
                            "`{full}` differs between layers ({} values); wgpt needs one value",
                            a.len()
                        )))
                    }
                }
            }
            None => v.as_u64(),
        };
        one.map(Some)
            .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a whole number")))
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some((full, v)) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a number"))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.raw(key) {
            None => Ok(None),
            Some((full, v)) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a string"))),
        }
    }

    fn required(&self, key: &str) -> Result<u64> {
        self.uint(key)?
            .ok_or_else(|| meta_error(format!("metadata `{}.{key}` is missing", self.arch)))
    }
}

/// A metadata problem, reported as a config error (the path is set by the caller).
pub(crate) fn meta_error(message: String) -> Error {
    Error::Config {
        path: "GGUF metadata".into(),
        message,
    }
}

/// ne[1] (rows) of a 2-D tensor, if the file has it.
fn rows_of(g: &Gguf, name: &str) -> Option<u64> {
    let t = g.tensors.get(name)?;
    (t.ne.len() == 2).then(|| t.ne[1] as u64)
}

/// The `config.json` the GGUF metadata stands for (in the family's own keys), the rotary
/// dimensions where only the metadata knows them exactly, and the end-of-text ids.
pub(crate) fn config_json(
    g: &Gguf,
    kind: Kind,
    arch: &str,
    eos: &[u32],
) -> Result<Map<String, Json>> {
    let m = Meta { g, arch };
    let mut c = Map::new();
    let vocab = match rows_of(g, "token_embd.weight") {
        Some(v) => v,
        None => m.required("vocab_size")?,
    };
    let tied = !g.tensors.contains_key("output.weight");
    let eps_key = match kind {
        Kind::Llama { .. } => "attention.layer_norm_rms_epsilon",
        _ => "attention.layer_norm_epsilon",
    };
    let eps = m.float(eps_key)?;
    let ctx = m.required("context_length")?;
    let (n_embd, n_layer, n_head) = (
        m.required("embedding_length")?,
        m.required("block_count")?,
        m.required("attention.head_count")?,
    );
    match kind {
        Kind::Gpt2 => {
            c.insert("model_type".into(), json!("gpt2"));
            c.insert("n_embd".into(), json!(n_embd));
            c.insert("n_layer".into(), json!(n_layer));
            c.insert("n_head".into(), json!(n_head));
            // The position table's rows are the real n_positions (the converter writes
            // `n_ctx` as the context length).
            let positions = rows_of(g, "position_embd.weight").unwrap_or(ctx);
            if positions != ctx {
                log::info!(
                    "gpt2.context_length = {ctx} but position_embd has {positions} rows: using {positions}"
                );
            }
            c.insert("n_positions".into(), json!(positions));
            // The converter writes 4·n_embd whatever n_inner was: the tensor knows.
            let inner = match rows_of(g, "blk.0.ffn_up.weight") {
                Some(r) => r,
                None => m.required("feed_forward_length")?,
            };
            c.insert("n_inner".into(), json!(inner));
            c.insert("vocab_size".into(), json!(vocab));
            if let Some(e) = eps {
                c.insert("layer_norm_epsilon".into(), json!(e));
            }
            c.insert("activation_function".into(), json!("gelu_new"));
        }
        Kind::Llama { permuted } => {
            c.insert(
                "model_type".into(),
                json!(if permuted { "llama" } else { "qwen2" }),
            );
            c.insert("hidden_size".into(), json!(n_embd));
            c.insert("num_hidden_layers".into(), json!(n_layer));
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
                None => rows_of(g, "blk.0.ffn_gate.weight").ok_or_else(|| {
                    meta_error(format!("metadata `{arch}.feed_forward_length` is missing"))
                })?,
            };
            c.insert("intermediate_size".into(), json!(ffn));
            c.insert("max_position_embeddings".into(), json!(ctx));
            c.insert("vocab_size".into(), json!(vocab));
            if let Some(e) = eps {
                c.insert("rms_norm_eps".into(), json!(e));
            }
            if let Some(t) = m.float("rope.freq_base")? {
                c.insert("rope_theta".into(), json!(t));
            }
            if permuted {
                let bias = g.tensors.contains_key("blk.0.attn_q.bias");
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
        }
        Kind::NeoX => {
            c.insert("model_type".into(), json!("gpt_neox"));
            c.insert("hidden_size".into(), json!(n_embd));
            c.insert("num_hidden_layers".into(), json!(n_layer));
            c.insert("num_attention_heads".into(), json!(n_head));
            c.insert("max_position_embeddings".into(), json!(ctx));
            c.insert(
                "intermediate_size".into(),
                json!(m.required("feed_forward_length")?),
            );
            c.insert("vocab_size".into(), json!(vocab));
            if let Some(e) = eps {
                c.insert("layer_norm_eps".into(), json!(e));
            }
            // The exact dimensions are set after parsing (`rotary_dims`); this keeps the
            // config reader's own rule from rounding.
            c.insert("rotary_pct".into(), json!(1.0));
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
        }
    }
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("eos_token_id".into(), json!(eos));
    Ok(c)
}

/// What the config reader cannot take from `config.json` keys: the exact rotary dimensions
/// (`rope.dimension_count`; NeoX rotates part of each head) and per-frequency rope factors
/// (`rope_freqs`, how the converter writes Llama 3's scaling).
pub(crate) fn finish_config(
    g: &Gguf,
    arch: &str,
    cfg: &mut Config,
    rope_freqs: Option<Vec<f32>>,
) -> Result<()> {
    let m = Meta { g, arch };
    let Some(rope) = cfg.rope.as_mut() else {
        return Ok(());
    };
    if let Some(d) = m.uint("rope.dimension_count")? {
        rope.dims = usize::try_from(d).unwrap_or(usize::MAX);
    }
    if let Some(f) = rope_freqs {
        if rope.scaling != RopeScaling::None {
            return Err(Error::Unsupported(format!(
                "both `{arch}.rope.scaling.type` and a rope_freqs tensor"
            )));
        }
        rope.scaling = RopeScaling::Factors(f.into_iter().map(f64::from).collect());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_orders_invert_the_converters_permutations() {
        // LlamaModel.permute, 2 heads of 8 rows: stored row h·8 + 2i + j = row h·8 + 4j + i.
        let (heads, rows) = (2, 16);
        let stored: Vec<usize> = (0..rows)
            .map(|r| {
                let (h, w) = (r / 8, r % 8);
                h * 8 + (w % 2) * 4 + w / 2
            })
            .collect();
        let order = RowOrder::LlamaRope { heads };
        assert!(order.fits(rows) && !order.fits(6));
        for r in 0..rows {
            assert_eq!(stored[order.source(r, rows)], r);
        }
        // GPT-NeoX: checkpoint rows [h: q k v] per head, stored q | k | v.
        let (heads, hd) = (3, 2);
        let rows = 3 * heads * hd;
        let stored: Vec<usize> = (0..rows)
            .map(|r| {
                let (part, h, d) = (r / (heads * hd), (r % (heads * hd)) / hd, r % hd);
                h * 3 * hd + part * hd + d
            })
            .collect();
        let order = RowOrder::NeoxQkv { heads };
        for r in 0..rows {
            assert_eq!(stored[order.source(r, rows)], r);
        }
    }

    #[test]
    fn llama_cpp_names_map_to_the_families_names() {
        let cfg = Config::preset("smollm2-135m").unwrap();
        let m = map_name(Kind::Llama { permuted: true }, &cfg, "blk.3.attn_k.weight").unwrap();
        assert_eq!(m.name, "model.layers.3.self_attn.k_proj.weight");
        assert_eq!(m.rows, RowOrder::LlamaRope { heads: 3 });
        let m = map_name(Kind::Llama { permuted: false }, &cfg, "blk.0.attn_q.bias").unwrap();
        assert_eq!(
            (m.name.as_str(), m.rows),
            ("model.layers.0.self_attn.q_proj.bias", RowOrder::AsStored)
        );
        let gpt2 = Config::preset("gpt2").unwrap();
        let m = map_name(Kind::Gpt2, &gpt2, "blk.1.ffn_up.weight").unwrap();
        assert_eq!(
            (m.name.as_str(), m.transposed),
            ("h.1.mlp.c_fc.weight", true)
        );
        let m = map_name(Kind::Gpt2, &gpt2, "blk.1.attn_norm.weight").unwrap();
        assert_eq!((m.name.as_str(), m.transposed), ("h.1.ln_1.weight", false));
        assert_eq!(
            map_name(Kind::Gpt2, &gpt2, "output.weight").unwrap().name,
            "lm_head.weight"
        );
        let neox = Config::preset("pythia-160m").unwrap();
        let m = map_name(Kind::NeoX, &neox, "output.weight").unwrap();
        assert_eq!(m.name, "embed_out.weight");
        assert!(map_name(Kind::NeoX, &neox, "rope_freqs.weight").is_none());
        assert!(map_name(Kind::NeoX, &neox, "blk.x.attn_qkv.weight").is_none());
    }
}
