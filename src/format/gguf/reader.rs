//! The GGUF container (versions 2 and 3, little-endian): header, metadata key/values of every
//! type (arrays nested to any reasonable depth), tensor infos, alignment and data offsets.
//!
//! Layout: `"GGUF"`, version u32, tensor count u64, metadata count u64; each metadata entry
//! a string key, a u32 value type and the value; each tensor info a string name, u32 n_dims,
//! n_dims × u64 `ne` (ne0 contiguous), u32 ggml type, u64 offset into the data section; the
//! data section starts at the next multiple of `general.alignment` (default 32). Strings are
//! a u64 byte length and UTF-8 bytes.
//!
//! Every count, length and offset is checked against the bytes that remain before it is
//! used, so a corrupt or truncated file gives an error, never a panic or an allocation larger
//! than the file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::DType;

/// Arrays nested deeper than this are refused (each level costs stack).
const MAX_DEPTH: usize = 8;
/// ggml's limit on tensor dimensions.
const MAX_DIMS: u32 = 4;
const DEFAULT_ALIGNMENT: usize = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            // The shortest decimal that rounds to the f32 (1e-5, not 9.999999747378752e-6),
            // as the checkpoint's config.json wrote it.
            Value::F32(v) => v.to_string().parse().ok(),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A ggml tensor type: the id the file writes and, where wgpt reads it, its [`DType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GgmlType(pub u32);

impl GgmlType {
    /// The [`DType`] of the ggml types wgpt supports.
    pub fn dtype(self) -> Option<DType> {
        Some(match self.0 {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// ggml's name of the type (`Q4_K`, `IQ2_XS`, …), or its number.
    pub fn name(self) -> String {
        const NAMES: [&str; 40] = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "Q4_2",
            "Q4_3",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q8_1",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
            "Q8_K",
            "IQ2_XXS",
            "IQ2_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ2_S",
            "IQ4_XS",
            "I8",
            "I16",
            "I32",
            "I64",
            "F64",
            "IQ1_M",
            "BF16",
            "Q4_0_4_4",
            "Q4_0_4_8",
            "Q4_0_8_8",
            "TQ1_0",
            "TQ2_0",
            "IQ4_NL_4_4",
            "IQ4_NL_4_8",
            "IQ4_NL_8_8",
            "MXFP4",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) => format!("{n} ({})", self.0),
            None => format!("type {}", self.0),
        }
    }
}

/// One tensor as its info describes it, its bytes already checked to lie inside the file.
#[derive(Debug, Clone)]
pub(crate) struct TensorInfo {
    pub ggml_type: GgmlType,
    /// ggml's `ne`: ne[0] is the contiguous (row) dimension.
    pub ne: Vec<usize>,
    /// Byte range in the file; empty for a type whose size wgpt does not know.
    pub range: Range<usize>,
}

impl TensorInfo {
    /// The shape in PyTorch's order (`ne` reversed): `[rows, row_len]` for a matrix.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().copied().collect()
    }
}

/// A parsed GGUF header: metadata and tensor infos.
#[derive(Debug)]
pub(crate) struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: HashMap<String, TensorInfo>,
    /// Tensor names in file order.
    pub order: Vec<String>,
}

impl Gguf {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}

/// A cursor over the file's bytes that never reads past the end.
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'b> Reader<'b> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Parse<&'b [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "{what} needs {n} bytes at offset {} but the file has {} left: truncated or corrupt",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Parse<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Parse<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_bytes` each, refused if the rest of the file cannot
    /// hold that many (so no allocation exceeds the file).
    fn count(&mut self, what: &str, min_bytes: usize) -> Parse<usize> {
        let n = self.u64(what)?;
        let fits = self.remaining() / min_bytes.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= fits => Ok(n),
            _ => Err(format!(
                "{what} is {n}, more than the {} bytes left in the file can hold: truncated or corrupt",
                self.remaining()
            )),
        }
    }

    fn string(&mut self, what: &str) -> Parse<String> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: length {len} is too large"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A metadata key or tensor name: a string without control characters, so that an error
    /// quoting it stays on one line.
    fn name(&mut self, what: &str) -> Parse<String> {
        let name = self.string(what)?;
        if name.chars().any(char::is_control) {
            return Err(format!(
                "{what} `{}` contains a control character: corrupt file",
                name.escape_debug()
            ));
        }
        Ok(name)
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Parse<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what}: {b} is not a boolean")),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("{what}: arrays nested more than {MAX_DEPTH} deep"));
                }
                let elem = self.u32(what)?;
                let n = self.count(what, min_value_bytes(elem))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(format!("{what} has unknown value type {t}")),
        })
    }
}

/// The fewest bytes a value of type `ty` takes (a string or array: its length field).
fn min_value_bytes(ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8,
        9 => 12,
        _ => 1,
    }
}

/// Bytes of a tensor of `ne` in `ty`: `None` if unknown type; `Err` if not whole blocks or
/// overflowing.
fn tensor_bytes(ty: GgmlType, ne: &[usize]) -> Parse<Option<usize>> {
    let Some(dtype) = ty.dtype() else {
        return Ok(None);
    };
    let row_len = ne.first().copied().unwrap_or(1);
    let rows = ne
        .iter()
        .skip(1)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("too many elements")?;
    if !row_len.is_multiple_of(dtype.block_len()) {
        return Err(format!(
            "rows of {row_len} elements are not whole {}-element blocks of {dtype}",
            dtype.block_len()
        ));
    }
    let row = dtype.bytes_of(row_len).ok_or("too many elements")?;
    row.checked_mul(rows)
        .map(Some)
        .ok_or_else(|| "too many elements".into())
}

/// Parses a GGUF file's header, metadata and tensor infos, and checks every tensor's bytes
/// against the file. Errors are [`Error::Weights`] naming `path`.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Gguf> {
    parse_inner(bytes).map_err(|message| Error::Weights {
        path: path.to_path_buf(),
        message,
    })
}

fn parse_inner(bytes: &[u8]) -> Parse<Gguf> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r
        .take(4, "the GGUF magic")
        .map_err(|_| format!("file is {} bytes, too short for a GGUF header", bytes.len()))?;
    if magic != b"GGUF" {
        return Err("not a GGUF file (no `GGUF` magic at the start)".into());
    }
    let version = r.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(
                "GGUF version 1 is not supported (re-convert the model: versions 2 and 3 are)"
                    .into(),
            )
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err("big-endian GGUF files are not supported".into())
        }
        v => return Err(format!("GGUF version {v} is not supported (2 and 3 are)")),
    }
    // Each tensor info takes at least 24 bytes, each metadata entry 13.
    let n_tensors = r.count("the tensor count", 24)?;
    let n_kv = r.count("the metadata count", 13)?;
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.name(&format!("metadata key {i}"))?;
        let ty = r.u32(&format!("the type of metadata `{key}`"))?;
        let value = r.value(ty, &format!("metadata `{key}`"), 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("metadata `{key}` appears twice"));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64().and_then(|a| usize::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() && a <= 1 << 30 => a,
            _ => return Err(format!("`general.alignment` = {v:?} is not a power of two")),
        },
    };
    let mut infos = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.name(&format!("the name of tensor {i}"))?;
        let n_dims = r.u32(&format!("the dimensions of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64(&format!("the shape of tensor `{name}`"))?;
            ne.push(
                usize::try_from(d)
                    .map_err(|_| format!("tensor `{name}` has a dimension of {d}"))?,
            );
        }
        let ty = GgmlType(r.u32(&format!("the type of tensor `{name}`"))?);
        let offset = r.u64(&format!("the offset of tensor `{name}`"))?;
        infos.push((name, ne, ty, offset));
    }
    let mut data_start = r.pos.next_multiple_of(alignment);
    if infos.is_empty() {
        // Vocabulary-only files end after the header, unpadded.
        data_start = data_start.min(bytes.len());
    }
    if data_start > bytes.len() {
        return Err(format!(
            "the data section would start at byte {data_start} but the file has {}: truncated",
            bytes.len()
        ));
    }
    let data_len = bytes.len() - data_start;
    let mut tensors = HashMap::with_capacity(infos.len());
    let mut order = Vec::with_capacity(infos.len());
    let mut spans: Vec<(usize, usize, String)> = Vec::with_capacity(infos.len());
    for (name, ne, ty, offset) in infos {
        let bad = |m: String| format!("tensor `{name}` ({}, shape {ne:?}): {m}", ty.name());
        let size = tensor_bytes(ty, &ne).map_err(bad)?;
        if offset % alignment as u64 != 0 {
            return Err(bad(format!(
                "offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= data_len)
            .ok_or_else(|| {
                bad(format!(
                    "offset {offset} lies past the {data_len}-byte data section: truncated or corrupt"
                ))
            })?;
        let len = size.unwrap_or(0);
        if len > data_len - start {
            return Err(bad(format!(
                "needs bytes {start}..{} of a {data_len}-byte data section: truncated or corrupt",
                start as u128 + len as u128
            )));
        }
        if size.is_some() {
            spans.push((start, start + len, name.clone()));
        }
        let info = TensorInfo {
            ggml_type: ty,
            ne,
            range: data_start + start..data_start + start + len,
        };
        if tensors.insert(name.clone(), info).is_some() {
            return Err(format!("tensor `{name}` appears twice"));
        }
        order.push(name);
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!(
                "tensors `{}` and `{}` overlap: corrupt file",
                w[0].2, w[1].2
            ));
        }
    }
    Ok(Gguf {
        version,
        metadata,
        tensors,
        order,
    })
}
