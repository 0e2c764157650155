//! What GGUF architectures share: the metadata reader ([`Meta`]), how a stored tensor maps to
//! the checkpoint's ([`Mapped`], [`RowOrder`]: the converter's row permutations undone whole
//! rows at a time), the `config.json` a file's metadata stands for, and the rope details only
//! the metadata and `rope_freqs` know. Each architecture's own names and metadata keys live
//! in its family's file (`Arch::gguf_architectures`, `gguf_config`, `gguf_tensor`).

use serde_json::{json, Map, Value as Json};

use super::super::family::Arch;
use crate::config::{Config, RopeScaling};
use crate::error::{Error, Result};
use crate::format::gguf::reader::{Gguf, Value};

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

impl Mapped {
    /// A tensor stored as the checkpoint has it.
    pub fn plain(name: String) -> Self {
        Mapped {
            name,
            transposed: false,
            rows: RowOrder::AsStored,
        }
    }
}

/// GGUF tensor `part.suffix` (of layer `layer`, or of the model) under its name in the Llama
/// layout of HF checkpoints that Llama, Qwen, Gemma and Phi-3 share: `token_embd`,
/// `output_norm`, `output`, and per layer the attention projections, the q / k norms, gate,
/// up and down (`model.embed_tokens`, `model.layers.N.self_attn.q_proj`, …). `own` names the
/// family's other per-layer parts first (its norms, its fused matrices).
pub(crate) fn llama_layout(
    layer: Option<usize>,
    part: &str,
    suffix: &str,
    own: impl Fn(&str) -> Option<&'static str>,
) -> Option<Mapped> {
    let Some(l) = layer else {
        let n = match part {
            "token_embd" => "model.embed_tokens",
            "output_norm" => "model.norm",
            "output" => "lm_head",
            _ => return None,
        };
        return Some(Mapped::plain(format!("{n}.{suffix}")));
    };
    let n = own(part).or(match part {
        "attn_norm" => Some("input_layernorm"),
        "attn_q" => Some("self_attn.q_proj"),
        "attn_k" => Some("self_attn.k_proj"),
        "attn_v" => Some("self_attn.v_proj"),
        "attn_output" => Some("self_attn.o_proj"),
        "attn_q_norm" => Some("self_attn.q_norm"),
        "attn_k_norm" => Some("self_attn.k_norm"),
        "ffn_gate" => Some("mlp.gate_proj"),
        "ffn_up" => Some("mlp.up_proj"),
        "ffn_down" => Some("mlp.down_proj"),
        _ => None,
    })?;
    Some(Mapped::plain(format!("model.layers.{l}.{n}.{suffix}")))
}

/// The checkpoint name of GGUF tensor `name` in the family that reads architecture `arch`
/// (`Arch::gguf_tensor` on `blk.N.part.suffix` or `part.suffix`), or `None` for tensors wgpt
/// does not read (`rope_freqs`, read into the config instead, and anything unknown).
pub(crate) fn map_name(family: &dyn Arch, arch: &str, cfg: &Config, name: &str) -> Option<Mapped> {
    let (base, suffix) = name.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    match base.strip_prefix("blk.") {
        None => family.gguf_tensor(arch, cfg, None, base, suffix),
        Some(rest) => {
            let (layer, part) = rest.split_once('.')?;
            let l: usize = layer.parse().ok()?;
            family.gguf_tensor(arch, cfg, Some(l), part, suffix)
        }
    }
}

/// Reads `{arch}.*` metadata with errors that name the key, and the values every family's
/// config needs.
pub(crate) struct Meta<'g> {
    pub g: &'g Gguf,
    pub arch: &'g str,
    /// The whole file, for the small tensors a config reads (Phi-3's rope factors).
    pub bytes: &'g [u8],
}

impl Meta<'_> {
    /// A one-dimensional tensor as f64 values (`None` when the file has no tensor `name`).
    pub fn vector(&self, name: &str) -> Result<Option<Vec<f64>>> {
        let Some(info) = self.g.tensors.get(name) else {
            return Ok(None);
        };
        let path = std::path::Path::new("GGUF");
        let t = crate::format::Tensor {
            dtype: crate::format::gguf::dtype_of(path, name, info)?,
            shape: info.shape(),
            data: std::borrow::Cow::Borrowed(crate::format::gguf::bytes_of(
                self.bytes, path, name, info,
            )?),
            transposed: false,
        };
        Ok(Some(t.to_f32().into_iter().map(f64::from).collect()))
    }

    pub fn raw(&self, key: &str) -> Option<(String, &Value)> {
        let full = format!("{}.{key}", self.arch);
        let v = self.g.get(&full)?;
        Some((full, v))
    }

    /// A whole number; a per-layer array is accepted when all its entries agree.
    pub fn uint(&self, key: &str) -> Result<Option<u64>> {
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

    pub fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some((full, v)) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a number"))),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.raw(key) {
            None => Ok(None),
            Some((full, v)) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| meta_error(format!("`{full}` = {v:?} is not a string"))),
        }
    }

    pub fn required(&self, key: &str) -> Result<u64> {
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
pub(crate) fn rows_of(g: &Gguf, name: &str) -> Option<u64> {
    let t = g.tensors.get(name)?;
    (t.ne.len() == 2).then(|| t.ne[1] as u64)
}

/// The `config.json` the GGUF metadata stands for, in the family's own keys (the family
/// writes its part, `Arch::gguf_config`), with the vocabulary size and tying from the tensors
/// and the end-of-text ids.
pub(crate) fn config_json(
    family: &dyn Arch,
    g: &Gguf,
    bytes: &[u8],
    arch: &str,
    eos: &[u32],
) -> Result<Map<String, Json>> {
    let m = Meta { g, arch, bytes };
    let mut c = Map::new();
    let vocab = match rows_of(g, "token_embd.weight") {
        Some(v) => v,
        None => m.required("vocab_size")?,
    };
    family.gguf_config(&m, &mut c)?;
    c.insert("vocab_size".into(), json!(vocab));
    c.insert(
        "tie_word_embeddings".into(),
        json!(!g.tensors.contains_key("output.weight")),
    );
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
    let m = Meta {
        g,
        arch,
        bytes: &[],
    };
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
        use crate::model::family::gguf_family;
        let name =
            |arch: &str, cfg: &Config, n: &str| map_name(gguf_family(arch).unwrap(), arch, cfg, n);
        let cfg = Config::preset("smollm2-135m").unwrap();
        let m = name("llama", &cfg, "blk.3.attn_k.weight").unwrap();
        assert_eq!(m.name, "model.layers.3.self_attn.k_proj.weight");
        assert_eq!(m.rows, RowOrder::LlamaRope { heads: 3 });
        let m = name("qwen2", &cfg, "blk.0.attn_q.bias").unwrap();
        assert_eq!(
            (m.name.as_str(), m.rows),
            ("model.layers.0.self_attn.q_proj.bias", RowOrder::AsStored)
        );
        let gpt2 = Config::preset("gpt2").unwrap();
        let m = name("gpt2", &gpt2, "blk.1.ffn_up.weight").unwrap();
        assert_eq!(
            (m.name.as_str(), m.transposed),
            ("h.1.mlp.c_fc.weight", true)
        );
        let m = name("gpt2", &gpt2, "blk.1.attn_norm.weight").unwrap();
        assert_eq!((m.name.as_str(), m.transposed), ("h.1.ln_1.weight", false));
        assert_eq!(
            name("gpt2", &gpt2, "output.weight").unwrap().name,
            "lm_head.weight"
        );
        let neox = Config::preset("pythia-160m").unwrap();
        let m = name("gptneox", &neox, "output.weight").unwrap();
        assert_eq!(m.name, "embed_out.weight");
        assert!(name("gptneox", &neox, "rope_freqs.weight").is_none());
        assert!(name("gptneox", &neox, "blk.x.attn_qkv.weight").is_none());
        // An architecture no family reads names the ones that are read.
        let err = gguf_family("mamba").err().unwrap().to_string();
        assert!(
            err.contains("`mamba`") && err.contains("gpt2, gptneox, llama, qwen2"),
            "{err}"
        );
    }
}
