//! Where a [`crate::Model`]'s tensors come from ([`Source`]: safetensors files, a GGUF file or
//! seeded random weights) and the checks of a source against the config's tensor list, made
//! before anything is allocated.

use std::borrow::Cow;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::dtype::{DType, Tensor};
use crate::format::safetensors::{index, parse_header, SafetensorsSource};
use crate::model::family::tensor_list;
use crate::util::Rng;

/// Checks that every tensor `cfg` needs is present with the config's shape and a supported
/// dtype; returns the dtypes used. Nothing is allocated before this passes.
pub(crate) fn check_tensors<'a>(
    cfg: &Config,
    lookup: impl Fn(&str) -> Option<(&'a str, &'a [usize])>,
) -> Result<Vec<DType>> {
    let mut dtypes = Vec::new();
    for t in tensor_list(cfg).0 {
        if matches!(t.stored, crate::model::tensors::Stored::Generated { .. }) {
            continue;
        }
        let (name, expected) = (t.name, t.shape);
        let Some((dtype, shape)) = lookup(&name) else {
            return Err(Error::MissingTensor { name });
        };
        if shape != expected {
            return Err(Error::Shape {
                name,
                expected,
                actual: shape.to_vec(),
            });
        }
        let dtype = DType::parse(dtype).ok_or_else(|| Error::DType {
            name,
            dtype: dtype.to_string(),
        })?;
        if !dtypes.contains(&dtype) {
            dtypes.push(dtype);
        }
    }
    Ok(dtypes)
}

/// Parses the bytes of a safetensors file and checks every tensor `cfg` needs (presence,
/// shape, dtype, bounds) exactly as [`crate::Model::load`] does, without a GPU. Returns the
/// dtypes of those tensors. For tools and fuzzing.
///
/// ```
/// let cfg = wgpt::Config::preset("gpt2").unwrap();
/// let err = wgpt::inspect_safetensors(b"not a safetensors file", &cfg).unwrap_err();
/// assert!(err.to_string().contains("header length field"), "{err}");
/// ```
pub fn inspect_safetensors(bytes: &[u8], cfg: &Config) -> Result<Vec<DType>> {
    cfg.validate()?;
    let path = Path::new("model.safetensors");
    let tensors = parse_header(path, bytes)?;
    let arch = crate::model::family::arch(cfg);
    let index = index(std::iter::once((path, &tensors)), arch)?;
    check_tensors(cfg, |name| {
        let m = tensors.get(&index.get(name)?.1)?;
        Some((m.dtype.as_str(), m.shape.as_slice()))
    })
}

/// Checks every tensor `cfg` needs (see [`inspect_safetensors`]); returns their dtypes.
pub(crate) fn check_safetensors(files: &SafetensorsSource, cfg: &Config) -> Result<Vec<DType>> {
    let dtypes = check_tensors(cfg, |name| files.header(name))?;
    let known: std::collections::HashSet<String> =
        tensor_list(cfg).0.into_iter().map(|t| t.name).collect();
    for (name, _, _) in files.metas() {
        // A tied head saved anyway is the embedding again.
        if !known.contains(name) && !name.ends_with("lm_head.weight") {
            log::warn!("ignoring unexpected tensor `{name}`");
        }
    }
    Ok(dtypes)
}

/// Where [`crate::Model`] gets its tensors.
pub(crate) enum Source {
    Files(SafetensorsSource),
    /// A memory-mapped GGUF file (see `crate::gguf`).
    Gguf(Box<crate::model::gguf::GgufSource>),
    /// Seeded N(0, 0.02)-like weights in the family's layout (norm weights 1, biases small).
    Synthetic {
        seed: u64,
    },
}

impl Source {
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor<'_>> {
        match self {
            Source::Files(s) => s.tensor(name),
            Source::Gguf(g) => g.tensor(name),
            Source::Synthetic { seed } => synthetic(*seed, name, shape),
        }
    }
}

fn synthetic(seed: u64, name: &str, shape: &[usize]) -> Result<Tensor<'static>> {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut rng = Rng::new(h);
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::DeviceLimits(format!("tensor `{name}` of shape {shape:?} is too large"))
        })?;
    let is_ln_weight = (name.contains("ln_") || name.contains("norm")) && name.ends_with(".weight");
    let values: Vec<f32> = (0..n)
        .map(|_| {
            // Uniform with the standard deviation of N(0, 0.02): ±0.02·√3.
            let u = (rng.next_f32() * 2.0 - 1.0) * 0.0346;
            if is_ln_weight {
                1.0 + u
            } else if name.ends_with(".bias") {
                u * 0.1
            } else {
                u
            }
        })
        .collect();
    Ok(Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: Cow::Owned(bytemuck::cast_slice(&values).to_vec()),
        transposed: false,
    })
}
