//! safetensors files: memory-mapped (single or sharded by `model.safetensors.index.json`) or
//! embedded bytes, each header checked against the file's size before any tensor is read.
//! Tensors are looked up by the name the model asks for: [`TensorNames`] maps a file's names
//! (in every naming style a family accepts) to those. No model knowledge here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::dtype::{DType, Tensor};
use crate::error::{Error, Result};

/// Maps a file's tensor names to the names the model's tensor list uses (prefixes such as
/// `transformer.` stripped), or `None` for a tensor that is ignored (causal-mask buffers, …).
pub(crate) trait TensorNames {
    /// The canonical name of `name`.
    fn canonical<'n>(&self, name: &'n str) -> Option<&'n str>;
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
pub(crate) struct TensorMeta {
    /// The dtype as written in the header (`F32`, `I32`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
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
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<HashMap<String, TensorMeta>> {
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
        if name.chars().any(char::is_control) {
            return Err(bad(format!(
                "tensor name `{}` contains a control character: corrupt header",
                name.escape_debug()
            )));
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
pub(crate) type Index = HashMap<String, (usize, String)>;

pub(crate) fn index<'a, N: TensorNames + ?Sized>(
    files: impl Iterator<Item = (&'a Path, &'a HashMap<String, TensorMeta>)>,
    canonical: &N,
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

/// Tensors from safetensors files, by canonical name.
pub(crate) struct SafetensorsSource {
    files: Vec<File>,
    index: Index,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards of `model.safetensors.index.json`.
    pub fn open_dir<N: TensorNames + ?Sized>(dir: &Path, canonical: &N) -> Result<Self> {
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
    pub fn from_static<N: TensorNames + ?Sized>(
        name: &str,
        bytes: &'static [u8],
        canonical: &N,
    ) -> Result<Self> {
        let file = File::parse(PathBuf::from(name), Backing::Static(bytes))?;
        Self::from_files(vec![file], canonical)
    }

    fn from_files<N: TensorNames + ?Sized>(files: Vec<File>, canonical: &N) -> Result<Self> {
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

    /// Every tensor by canonical name: its header entry (dtype as written, shape).
    pub fn metas(&self) -> impl Iterator<Item = (&str, &str, &[usize])> + '_ {
        self.index.keys().filter_map(|name| {
            let (_, m) = self.meta(name)?;
            Some((name.as_str(), m.dtype.as_str(), m.shape.as_slice()))
        })
    }

    /// The header entry (dtype as written, shape) of a tensor by canonical name.
    pub fn header(&self, name: &str) -> Option<(&str, &[usize])> {
        self.meta(name)
            .map(|(_, m)| (m.dtype.as_str(), m.shape.as_slice()))
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
