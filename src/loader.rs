//! Where weights come from: memory-mapped safetensors files (single or sharded, in every
//! naming style the family accepts), bytes embedded in the binary, or seeded random weights
//! for synthetic models. Tensors are looked up by the canonical name the family's tensor list
//! uses (`wte.weight`, `h.3.attn.c_attn.weight`, …); the family's `canonical` maps file names
//! to it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::tensor_list;

/// The family whose `canonical` maps a file's tensor names to the tensor list's.
pub(crate) type Canonical<'c> = &'c dyn crate::model::Arch;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (IEEE half).
    F16,
    /// bfloat16 (converted exactly to f32 on loading).
    BF16,
    /// ggml's block formats (GGUF files), with ggml's exact block layouts: 32-weight blocks
    /// (`Q8_0` … `Q5_1`) and 256-weight super-blocks (`Q4K`, `Q5K`, `Q6K`). A tensor in one
    /// of these is a matrix of rows, each `row_len / block_len` blocks (see `crate::quant`).
    /// ggml Q8_0: 32 × i8 and an f16 scale (34 bytes per 32 weights).
    Q8_0,
    /// ggml Q4_0: 32 × 4 bits and an f16 scale (18 bytes).
    Q4_0,
    /// ggml Q4_1: 32 × 4 bits, f16 scale and min (20 bytes).
    Q4_1,
    /// ggml Q5_0: 32 × 5 bits and an f16 scale (22 bytes).
    Q5_0,
    /// ggml Q5_1: 32 × 5 bits, f16 scale and min (24 bytes).
    Q5_1,
    /// ggml Q4_K: 256 × 4 bits in 8 sub-blocks with 6-bit scales and mins (144 bytes).
    Q4K,
    /// ggml Q5_K: 256 × 5 bits in 8 sub-blocks with 6-bit scales and mins (176 bytes).
    Q5K,
    /// ggml Q6_K: 256 × 6 bits in 16 sub-blocks with 8-bit scales (210 bytes).
    Q6K,
}

impl DType {
    /// The dtype of a safetensors header name (`F32`, `F16`, `BF16`), if wgpt supports it.
    fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// Weights per block (1 for the float types).
    pub fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => 32,
            DType::Q4K | DType::Q5K | DType::Q6K => 256,
        }
    }

    /// Bytes per block (per element for the float types).
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
        }
    }

    /// Whether this is one of ggml's block formats.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of `n` elements (`None` if `n` is not a whole number of blocks, or overflows).
    pub fn bytes_of(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q4K => "q4_k",
            DType::Q5K => "q5_k",
            DType::Q6K => "q6_k",
        })
    }
}

/// One tensor: dtype, shape and little-endian bytes (borrowed from the map when possible).
/// A tensor in a block format is a matrix stored by rows, shape `[rows, row_len]`, each row
/// `row_len / block_len` blocks.
pub struct Tensor<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
    /// The data is the transpose of the shape the family lists (a GGUF file stores GPT-2's
    /// `Conv1D` weights, listed (in, out), as (out, in) rows); `shape` is the stored one.
    pub transposed: bool,
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
            q => crate::quant::dequantize(q, d),
        }
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    #[cfg(feature = "default-model")]
    Static(&'static [u8]),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            #[cfg(feature = "default-model")]
            Backing::Static(s) => s,
        }
    }
}

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone)]
struct TensorMeta {
    /// The dtype as written in the header (`F32`, `I32`, ...).
    dtype: String,
    shape: Vec<usize>,
    /// Byte range in the file (already checked to lie inside it).
    range: std::ops::Range<usize>,
}

/// Headers larger than this are refused, as the safetensors format itself does.
const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(serde::Deserialize)]
struct RawTensorMeta {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Bits per element of the safetensors dtypes whose size we know.
fn dtype_bits(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 64,
        "F32" | "I32" | "U32" => 32,
        "F16" | "BF16" | "I16" | "U16" => 16,
        "F8_E4M3" | "F8_E5M2" | "F8_E8M0" | "I8" | "U8" | "BOOL" => 8,
        _ => return None,
    })
}

/// Parses a safetensors header and checks that every tensor's bytes lie inside the file and
/// match its shape and dtype, so that no later access can go out of bounds.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<HashMap<String, TensorMeta>> {
    let bad = |message: String| Error::Weights {
        path: path.to_path_buf(),
        message,
    };
    let len = bytes.len();
    let Some(n) = bytes.first_chunk::<8>() else {
        return Err(bad(format!(
            "file is {len} bytes, too short for a safetensors header (truncated?)"
        )));
    };
    let n = u64::from_le_bytes(*n);
    if n > (len - 8) as u64 {
        return Err(bad(format!(
            "header length field says {n} bytes but the file has only {len}: truncated or not a safetensors file"
        )));
    }
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {n} is above the {MAX_HEADER_BYTES} bytes safetensors allows: corrupt or not a safetensors file"
        )));
    }
    // Both fit in `len`, checked above.
    let data_start = 8 + n as usize;
    let data_len = len - data_start;
    let header = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|_| bad("header is not UTF-8: corrupt or not a safetensors file".into()))?;
    // A sorted map, so that the first problem reported does not vary from run to run.
    let entries: serde_json::Map<String, serde_json::Value> = serde_json::from_str(header)
        .map_err(|e| {
            bad(format!(
                "header is not safetensors JSON ({e}): corrupt or not a safetensors file"
            ))
        })?;
    let mut tensors = HashMap::with_capacity(entries.len());
    let mut data_end = 0;
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let raw: RawTensorMeta = serde_json::from_value(value)
            .map_err(|e| bad(format!("header entry `{name}` is malformed: {e}")))?;
        let [a, b] = raw.data_offsets;
        if a > b || b > data_len {
            return Err(bad(format!(
                "tensor `{name}` claims bytes {a}..{b} of a {data_len}-byte data section: truncated or corrupt file"
            )));
        }
        if let Some(bits) = dtype_bits(&raw.dtype) {
            let needed = raw
                .shape
                .iter()
                .try_fold(bits, |acc, &d| acc.checked_mul(d))
                .map(|b| b.div_ceil(8));
            if needed != Some(b - a) {
                return Err(bad(format!(
                    "tensor `{name}` has {} bytes but shape {:?} in {} needs {}: corrupt header",
                    b - a,
                    raw.shape,
                    raw.dtype,
                    needed.map_or("more than fits in memory".into(), |n| n.to_string())
                )));
            }
        }
        data_end = data_end.max(b);
        tensors.insert(
            name,
            TensorMeta {
                dtype: raw.dtype,
                shape: raw.shape,
                range: data_start + a..data_start + b,
            },
        );
    }
    if data_end != data_len {
        return Err(bad(format!(
            "the data section has {data_len} bytes but its tensors cover {data_end}: corrupt file"
        )));
    }
    Ok(tensors)
}

/// One parsed safetensors file.
struct File {
    path: PathBuf,
    backing: Backing,
    tensors: HashMap<String, TensorMeta>,
}

impl File {
    fn parse(path: PathBuf, backing: Backing) -> Result<Self> {
        let tensors = parse_header(&path, backing.bytes())?;
        // The `safetensors` crate then checks conformance to the format (ordering, overlaps).
        // It runs second: our checks above bound every offset, so its arithmetic cannot
        // overflow on a crafted header, and ours give the more precise messages.
        safetensors::SafeTensors::read_metadata(backing.bytes()).map_err(|e| Error::Weights {
            path: path.clone(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        Ok(File {
            path,
            backing,
            tensors,
        })
    }
}

/// canonical name → (file index, name in that file), refusing a tensor stored twice.
type Index = HashMap<String, (usize, String)>;

fn index<'a>(
    files: impl Iterator<Item = (&'a Path, &'a HashMap<String, TensorMeta>)>,
    canonical: Canonical<'_>,
) -> Result<Index> {
    let mut index = Index::new();
    let mut paths = Vec::new();
    for (i, (path, tensors)) in files.enumerate() {
        paths.push(path);
        for name in tensors.keys() {
            let Some(c) = canonical.canonical(name) else {
                continue;
            };
            // `j` indexes `paths`: it was pushed when file `j` was indexed.
            if let Some((j, other)) = index.insert(c.to_string(), (i, name.clone())) {
                return Err(Error::Weights {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor `{c}` is stored twice (as `{other}` in {} and as `{name}`)",
                        paths[j].display()
                    ),
                });
            }
        }
    }
    Ok(index)
}

/// Checks that every tensor `cfg` needs is present with the config's shape and a supported
/// dtype; returns the dtypes used. Nothing is allocated before this passes.
fn check_tensors<'a>(
    cfg: &Config,
    lookup: impl Fn(&str) -> Option<&'a TensorMeta>,
) -> Result<Vec<DType>> {
    let mut dtypes = Vec::new();
    for t in tensor_list(cfg).0 {
        if matches!(t.stored, crate::model::weights::Stored::Generated { .. }) {
            continue;
        }
        let (name, expected) = (t.name, t.shape);
        let Some(meta) = lookup(&name) else {
            return Err(Error::MissingTensor { name });
        };
        if meta.shape != expected {
            return Err(Error::Shape {
                name,
                expected,
                actual: meta.shape.clone(),
            });
        }
        let dtype = DType::parse(&meta.dtype).ok_or_else(|| Error::DType {
            name,
            dtype: meta.dtype.clone(),
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
    let arch = crate::model::arch(cfg);
    let index = index(std::iter::once((path, &tensors)), arch)?;
    check_tensors(cfg, |name| {
        index.get(name).and_then(|(_, n)| tensors.get(n))
    })
}

/// Tensors from safetensors files, by canonical name.
pub(crate) struct SafetensorsSource {
    files: Vec<File>,
    index: Index,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards of `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path, canonical: Canonical<'_>) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            let file = File::parse(single.clone(), map(&single)?)?;
            return Self::from_files(vec![file], canonical);
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
            if !p.is_file() {
                return Err(bad(format!("shard `{s}` is missing")));
            }
            files.push(File::parse(p.clone(), map(&p)?)?);
        }
        Self::from_files(files, canonical)
    }

    /// A single safetensors file held in memory for the program's lifetime (embedded models).
    #[cfg(feature = "default-model")]
    pub fn from_static(name: &str, bytes: &'static [u8], canonical: Canonical<'_>) -> Result<Self> {
        let file = File::parse(PathBuf::from(name), Backing::Static(bytes))?;
        Self::from_files(vec![file], canonical)
    }

    fn from_files(files: Vec<File>, canonical: Canonical<'_>) -> Result<Self> {
        let index = index(
            files.iter().map(|f| (f.path.as_path(), &f.tensors)),
            canonical,
        )?;
        Ok(SafetensorsSource { files, index })
    }

    fn meta(&self, name: &str) -> Option<(&File, &TensorMeta)> {
        let (fi, n) = self.index.get(name)?;
        let file = self.files.get(*fi)?;
        Some((file, file.tensors.get(n)?))
    }

    /// Checks every tensor `cfg` needs (see [`inspect_safetensors`]); returns their dtypes.
    pub fn check(&self, cfg: &Config) -> Result<Vec<DType>> {
        let dtypes = check_tensors(cfg, |name| self.meta(name).map(|(_, m)| m))?;
        let known: std::collections::HashSet<String> =
            tensor_list(cfg).0.into_iter().map(|t| t.name).collect();
        for name in self.index.keys() {
            // A tied head saved anyway is the embedding again.
            if !known.contains(name) && !name.ends_with("lm_head.weight") {
                log::warn!("ignoring unexpected tensor `{name}`");
            }
        }
        Ok(dtypes)
    }

    /// A tensor by canonical name.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>> {
        let (file, meta) = self
            .meta(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into() })?;
        let dtype = DType::parse(&meta.dtype).ok_or_else(|| Error::DType {
            name: name.into(),
            dtype: meta.dtype.clone(),
        })?;
        let data = file
            .backing
            .bytes()
            .get(meta.range.clone())
            .ok_or_else(|| Error::Weights {
                path: file.path.clone(),
                message: format!("tensor `{name}` lies outside the file"),
            })?;
        Ok(Tensor {
            dtype,
            shape: meta.shape.clone(),
            data: Cow::Borrowed(data),
            transposed: false,
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

/// Where [`crate::Model`] gets its tensors.
pub(crate) enum Source {
    Files(SafetensorsSource),
    /// A memory-mapped GGUF file (see `crate::gguf`).
    Gguf(Box<crate::gguf::GgufSource>),
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
