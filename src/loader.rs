//! Where weights come from: memory-mapped safetensors files (single or sharded, both GPT-2
//! naming styles), bytes embedded in the binary, or seeded random weights for synthetic models.
//! Tensors are looked up by their canonical name (`wte.weight`, `h.3.attn.c_attn.weight`, …).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorInfo};

use crate::config::Config;
use crate::error::{Error, Result};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// One tensor: dtype, shape and little-endian bytes (borrowed from the map when possible).
pub struct Tensor<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

impl Tensor<'_> {
    /// The values as f32 (an owned copy of this one tensor).
    pub fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    Static(&'static [u8]),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Static(s) => s,
        }
    }
}

/// One parsed safetensors file.
struct File {
    path: PathBuf,
    backing: Backing,
    data_start: usize,
    infos: HashMap<String, TensorInfo>,
}

impl File {
    fn parse(path: PathBuf, backing: Backing) -> Result<Self> {
        let bytes = backing.bytes();
        let (n, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights {
                path: path.clone(),
                message: describe(&e, bytes.len()),
            })?;
        let infos = meta
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        Ok(File {
            path,
            backing,
            data_start: 8 + n,
            infos,
        })
    }
}

fn describe(e: &safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => {
            format!("file is {len} bytes, too short for a safetensors header (truncated?)")
        }
        E::HeaderTooLarge | E::InvalidHeaderLength => {
            format!("header length field is larger than the file ({len} bytes): truncated or not a safetensors file")
        }
        E::MetadataIncompleteBuffer => {
            "data section does not match the header (truncated or corrupt file)".into()
        }
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            "header is not valid safetensors JSON (corrupt or not a safetensors file)".into()
        }
        other => format!("{other}"),
    }
}

/// Canonical tensor name, or `None` for tensors wgpt ignores (GPT-2's causal-mask buffers).
fn canonical(name: &str) -> Option<&str> {
    let name = name.strip_prefix("transformer.").unwrap_or(name);
    if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") {
        return None;
    }
    Some(name)
}

/// Tensors from safetensors files, by canonical name.
pub(crate) struct SafetensorsSource {
    files: Vec<File>,
    /// canonical name → (file index, name in file)
    index: HashMap<String, (usize, String)>,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards of `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            return Self::from_files(vec![File::parse(single.clone(), map(&single)?)?]);
        }
        if !index.exists() {
            return Err(Error::Weights {
                path: single,
                message: "not found (nor model.safetensors.index.json)".into(),
            });
        }
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let bad = |message: String| Error::Weights {
            path: index.clone(),
            message,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let map_obj = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        let mut shards: Vec<String> = Vec::new();
        for v in map_obj.values() {
            let s = v
                .as_str()
                .ok_or_else(|| bad("a `weight_map` value is not a file name".into()))?;
            if s.contains('/') || s.contains('\\') || s.contains("..") {
                return Err(bad(format!("shard name `{s}` is not a plain file name")));
            }
            if !shards.iter().any(|x| x == s) {
                shards.push(s.to_string());
            }
        }
        let mut files = Vec::with_capacity(shards.len());
        for s in &shards {
            let p = dir.join(s);
            if !p.exists() {
                return Err(bad(format!("shard `{s}` is missing")));
            }
            files.push(File::parse(p.clone(), map(&p)?)?);
        }
        Self::from_files(files)
    }

    /// A single safetensors file held in memory for the program's lifetime (embedded models).
    pub fn from_static(name: &str, bytes: &'static [u8]) -> Result<Self> {
        Self::from_files(vec![File::parse(
            PathBuf::from(name),
            Backing::Static(bytes),
        )?])
    }

    fn from_files(files: Vec<File>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.infos.keys() {
                if let Some(c) = canonical(name) {
                    index.insert(c.to_string(), (i, name.clone()));
                }
            }
        }
        Ok(SafetensorsSource { files, index })
    }

    /// Canonical names of every tensor in the files.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Shape of a tensor, without touching its data.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let (fi, n) = self.index.get(name)?;
        self.files[*fi].infos.get(n).map(|i| i.shape.as_slice())
    }

    /// A tensor by canonical name.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>> {
        let (fi, n) = self
            .index
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into() })?;
        let f = &self.files[*fi];
        let info = &f.infos[n];
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(Error::DType {
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (a, b) = info.data_offsets;
        let data = f
            .backing
            .bytes()
            .get(f.data_start + a..f.data_start + b)
            .ok_or_else(|| Error::Weights {
                path: f.path.clone(),
                message: format!("tensor `{n}` lies outside the file"),
            })?;
        Ok(Tensor {
            dtype,
            shape: info.shape.clone(),
            data: Cow::Borrowed(data),
        })
    }
}

fn map(path: &Path) -> Result<Backing> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; wgpt does not modify the file, and a model file changed
    // underneath a running process is outside what any loader can defend against.
    let m = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Backing::Mapped(m))
}

/// A small, fast, seedable PRNG (SplitMix64); used for sampling and synthetic weights.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The canonical tensor names and shapes a config requires, in load order.
pub(crate) fn expected_tensors(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
    let mut out = vec![
        ("wte.weight".to_string(), vec![v, c]),
        ("wpe.weight".to_string(), vec![cfg.n_positions, c]),
    ];
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        out.extend([
            (p("ln_1.weight"), vec![c]),
            (p("ln_1.bias"), vec![c]),
            (p("attn.c_attn.weight"), vec![c, 3 * c]),
            (p("attn.c_attn.bias"), vec![3 * c]),
            (p("attn.c_proj.weight"), vec![c, c]),
            (p("attn.c_proj.bias"), vec![c]),
            (p("ln_2.weight"), vec![c]),
            (p("ln_2.bias"), vec![c]),
            (p("mlp.c_fc.weight"), vec![c, f]),
            (p("mlp.c_fc.bias"), vec![f]),
            (p("mlp.c_proj.weight"), vec![f, c]),
            (p("mlp.c_proj.bias"), vec![c]),
        ]);
    }
    out.push(("ln_f.weight".to_string(), vec![c]));
    out.push(("ln_f.bias".to_string(), vec![c]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, c]));
    }
    out
}

/// Where [`crate::Model`] gets its tensors.
pub(crate) enum Source {
    Files(SafetensorsSource),
    /// Seeded N(0, 0.02)-like weights with GPT-2's layout (LayerNorm weights 1, biases small).
    Synthetic {
        seed: u64,
    },
}

impl Source {
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor<'_>> {
        match self {
            Source::Files(s) => s.tensor(name),
            Source::Synthetic { seed } => Ok(synthetic(*seed, name, shape)),
        }
    }
}

fn synthetic(seed: u64, name: &str, shape: &[usize]) -> Tensor<'static> {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut rng = Rng::new(h);
    let n: usize = shape.iter().product();
    let is_ln_weight = name.contains("ln_") && name.ends_with(".weight");
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
    Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: Cow::Owned(bytemuck::cast_slice(&values).to_vec()),
    }
}
