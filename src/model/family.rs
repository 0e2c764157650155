//! The family seam: [`Arch`], what a model family is to the rest of wgpt (one implementation
//! per family file: `gpt2.rs`, `gpt1.rs`, `opt.rs`, `neox.rs`, `llama.rs`, `gemma.rs`,
//! `phi3.rs`), the list of families ([`Family`], [`ARCHES`], [`arch`]), and the parts of
//! [`Config`] that ask the family (parsing a `config.json` by its `model_type`, presets,
//! parameter counts).

use std::path::Path;

use serde_json::{Map, Value, Value as Json};

use super::forward::{Activations, Forward};
use super::gguf::{Mapped, Meta};
use super::phi3::LongRope;
use super::tensors::TensorList;
use super::upload::Uploader;
use super::weights::Weights;
use super::{gemma, gpt1, gpt2, llama, neox, opt, phi3};
use crate::config::{bad, Config, Fields, DEFAULT_CONTEXT};
use crate::error::{Error, Result};

/// What a model family is to the rest of wgpt: one implementation per module.
pub(crate) trait Arch: Sync {
    /// The `model_type` values of `config.json` this family reads (the first is its name).
    fn model_types(&self) -> &'static [&'static str];
    /// Reads the family's `config.json` keys (legacy names included) into a [`Config`].
    fn config(&self, f: &Fields) -> Result<Config>;
    /// The names of the real checkpoints [`Arch::preset`] knows.
    fn presets(&self) -> &'static [&'static str];
    /// The shapes of real checkpoints of this family by name (`--synthetic`).
    fn preset(&self, name: &str) -> Option<Config>;
    /// A file's tensor name as this family's tensor list names it (prefixes such as
    /// `transformer.` stripped), or `None` for a buffer that is ignored (causal masks, …).
    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str>;
    /// Every tensor the config needs, in load order.
    fn tensors(&self, cfg: &Config) -> TensorList;
    /// Uploads the tensors (transposing, fusing and reordering as the family needs).
    fn upload(&self, up: &mut Uploader<'_>, cfg: &Config) -> Result<Weights>;
    /// Records the forward pass: embedding, every layer, final norm, LM head. The families
    /// write one op per line with its math and output shape beside it; ⁽ᶠ⁾ marks a step that a
    /// single-token step leaves to the next kernel (`kv_store` to attention in both kernel
    /// families; a LayerNorm before a linear layer to the matrix-vector kernel where
    /// `Kernels::fuses_decode_norm`, and the final one where `Kernels::fuses_head_norm`).
    fn forward(&self, f: &mut Forward<'_>, cfg: &Config, a: &Activations, w: &Weights);
    /// The GGUF `general.architecture` values this family reads (none: no GGUF files).
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &[]
    }
    /// Writes the `config.json` keys a GGUF file's `{arch}.*` metadata stands for (the
    /// vocabulary size, tying and eos ids are added by the caller).
    fn gguf_config(&self, m: &Meta<'_>, c: &mut Map<String, Json>) -> Result<()> {
        let _ = c;
        Err(Error::Unsupported(format!(
            "GGUF architecture `{}`",
            m.arch
        )))
    }
    /// GGUF tensors that [`Arch::gguf_config`] reads as settings, not weights (so the loader
    /// does not report them as ignored).
    fn gguf_setting_tensors(&self) -> &'static [&'static str] {
        &[]
    }
    /// The checkpoint tensor (and how it is stored) of GGUF tensor `part.suffix` of layer
    /// `layer` (`blk.N.part`) or of the model (`token_embd`, `output_norm`, `output`, …).
    fn gguf_tensor(
        &self,
        arch: &str,
        cfg: &Config,
        layer: Option<usize>,
        part: &str,
        suffix: &str,
    ) -> Option<Mapped> {
        let _ = (arch, cfg, layer, part, suffix);
        None
    }
}

/// The family that reads GGUF architecture `arch`.
pub(crate) fn gguf_family(arch: &str) -> Result<&'static dyn Arch> {
    ARCHES
        .iter()
        .copied()
        .find(|a| a.gguf_architectures().contains(&arch))
        .ok_or_else(|| {
            let names: Vec<&str> = ARCHES
                .iter()
                .flat_map(|a| a.gguf_architectures())
                .copied()
                .collect();
            Error::Unsupported(format!(
                "GGUF architecture `{arch}`; supported: {}",
                names.join(", ")
            ))
        })
}

impl crate::format::safetensors::TensorNames for dyn Arch {
    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str> {
        Arch::canonical(self, name)
    }
}

/// Which model family a config belongs to, with the options only its own file reads (the
/// family's forward pass and upload). Everything the shared code needs is a plain field of
/// [`Config`]; nothing but the family files and [`arch`] match on this.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Family {
    /// GPT-2 (`gpt2`): pre-LN blocks, learned positions, final LayerNorm.
    Gpt2,
    /// GPT-1 (`openai-gpt`): post-LN blocks (`x = LN(x + sublayer(x))`), no final LayerNorm.
    Gpt1,
    /// OPT (`opt`): learned positions with HF's offset of 2, separate q/k/v projections.
    Opt {
        /// `do_layer_norm_before`: pre-LN (most sizes) or post-LN (opt-350m).
        pre_norm: bool,
        /// A final LayerNorm after the last layer (pre-LN without `_remove_final_layer_norm`).
        final_norm: bool,
    },
    /// GPT-NeoX / Pythia (`gpt_neox`): rotary positions on part of each head.
    NeoX {
        /// `use_parallel_residual`: `x + attn(LN1(x)) + mlp(LN2(x))`.
        parallel_residual: bool,
    },
    /// The Llama family (`llama`, `mistral`, `qwen2`, `qwen3`).
    Llama {
        /// Biases on the q, k and v projections (Qwen2; Llama's `attention_bias`).
        qkv_bias: bool,
        /// A bias on the output projection (Llama's `attention_bias`).
        o_bias: bool,
        /// RMSNorm on every query and key head before rotary positions (Qwen3).
        qk_norm: bool,
    },
    /// Phi-3 / 3.5 (`phi3`).
    Phi3 {
        /// `longrope` scaling, where the config has it.
        long_rope: Option<LongRope>,
    },
    /// Gemma 2 and 3 (`gemma2`, `gemma3_text`, `gemma3`).
    Gemma {
        /// RMSNorm on every query and key head (Gemma 3).
        qk_norm: bool,
        /// `final_logit_softcapping` (Gemma 2: 30).
        final_softcap: Option<f32>,
        /// The rotary base of the sliding-window layers (Gemma 3's `rope_local_base_freq`).
        local_theta: f64,
    },
}

/// Every family wgpt runs.
pub(crate) const ARCHES: [&dyn Arch; 7] = [
    &gpt2::Gpt2,
    &gpt1::Gpt1,
    &opt::Opt,
    &neox::NeoX,
    &llama::Llama,
    &gemma::Gemma,
    &phi3::Phi3,
];

/// The family module of a config.
pub(crate) fn arch(cfg: &Config) -> &'static dyn Arch {
    match cfg.family {
        Family::Gpt2 => &gpt2::Gpt2,
        Family::Gpt1 => &gpt1::Gpt1,
        Family::Opt { .. } => &opt::Opt,
        Family::NeoX { .. } => &neox::NeoX,
        Family::Llama { .. } => &llama::Llama,
        Family::Gemma { .. } => &gemma::Gemma,
        Family::Phi3 { .. } => &phi3::Phi3,
    }
}

/// Parses a `config.json` with the family its `model_type` names (GPT-2 when absent, as
/// the oldest GPT-2 configs are).
pub(crate) fn parse_config(f: &Fields) -> Result<Config> {
    let model_type = f.string("model_type")?.unwrap_or("gpt2");
    let Some(a) = ARCHES
        .iter()
        .find(|a| a.model_types().contains(&model_type))
    else {
        let names: Vec<&str> = ARCHES
            .iter()
            .flat_map(|a| a.model_types())
            .copied()
            .collect();
        return Err(Error::Unsupported(format!(
            "model_type `{model_type}`; supported: {}",
            names.join(", ")
        )));
    };
    a.config(f)
}

/// The tensors `cfg` needs.
pub(crate) fn tensor_list(cfg: &Config) -> TensorList {
    arch(cfg).tensors(cfg)
}

/// A preset config by name (see [`presets`]).
pub(crate) fn preset(name: &str) -> Option<Config> {
    ARCHES.iter().find_map(|a| a.preset(name))
}

/// The names [`Config::preset`] knows: the real checkpoints' shapes every family offers, in
/// the order of the family list.
pub fn presets() -> Vec<&'static str> {
    ARCHES.iter().flat_map(|a| a.presets()).copied().collect()
}

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Fields(map),
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => return Err(bad(format!("not valid JSON: {e}"))),
        };
        let mut config = parse_config(&raw)?;
        config.n_ctx = config.n_positions.min(DEFAULT_CONTEXT);
        config.validate()?;
        Ok(config)
    }

    /// The family's `model_type` (`gpt2`, `openai-gpt`, `opt`, `gpt_neox`).
    pub fn model_type(&self) -> &'static str {
        arch(self).model_types()[0]
    }

    /// Number of parameters (tied head counted once); `u64::MAX` if it overflows, which only
    /// a config that fails [`Config::validate`] can do.
    pub fn n_params(&self) -> u64 {
        tensor_list(self).params()
    }

    /// The shapes of real checkpoints, for `--synthetic` models and benchmarks: `gpt2`,
    /// `gpt2-medium`, `gpt2-large`, `gpt2-xl`, and one or two per other family (see [`presets`]).
    pub fn preset(name: &str) -> Option<Self> {
        let mut c = preset(name)?;
        c.n_ctx = c.n_positions.min(DEFAULT_CONTEXT);
        Some(c)
    }
}
