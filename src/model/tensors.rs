//! The tensor list: every tensor a family reads, with its canonical name, its shape in the
//! file and how it is stored on the GPU. Parameter counts, weight bytes, device-fit checks
//! and the file checks all read this one list.

use crate::config::Config;
use crate::kernels::{matrix_bytes, WeightDtype};

/// How a file tensor is stored on the GPU, for byte counts and device-fit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A (K, N) weight matrix texture of its own, in the storage format.
    Matrix { k: usize, n: usize },
    /// Part of the matrix or vector listed before it (q/k/v fused at upload): no bytes of
    /// its own, and the list's entry for the fused matrix has the whole shape.
    Within,
    /// The (V, C) token embedding, stored transposed as (C, V) textures split by vocabulary.
    Embedding { v: usize, c: usize },
    /// An f32 storage buffer of this many elements (biases, norms, position tables).
    F32 { len: usize },
    /// An f32 buffer made at upload, not read from the file (rotary tables).
    Generated { len: usize },
}

/// One tensor a family reads: its canonical name, its shape in the file and how it is stored.
#[derive(Debug, Clone)]
pub(crate) struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: Stored,
}

/// Every tensor of a model, in load order: the one list parameter counts, weight bytes,
/// device-fit checks and the file check read.
pub(crate) struct TensorList(pub Vec<TensorSpec>);

impl TensorList {
    pub fn new() -> Self {
        TensorList(Vec::new())
    }

    /// A tensor of `shape` in the file, stored as `stored`.
    pub fn push(&mut self, name: String, shape: Vec<usize>, stored: Stored) {
        self.0.push(TensorSpec {
            name,
            shape,
            stored,
        });
    }

    /// An (out, in) `nn.Linear` weight, stored as a (in, out) matrix.
    pub fn linear_weight(&mut self, name: String, k: usize, n: usize) {
        self.push(name, vec![n, k], Stored::Matrix { k, n });
    }

    /// `nn.Linear` weights over the same input, each (n, k) in the file as `parts` lists
    /// (name, n), stacked into one (k, Σn) matrix at upload (`Uploader::linears_stacked`:
    /// q | k | v, gate | up).
    pub fn linear_weights_stacked(&mut self, parts: &[(String, usize)], k: usize) {
        let n = parts.iter().map(|p| p.1).sum();
        for (i, (name, rows)) in parts.iter().enumerate() {
            match i {
                0 => self.push(name.clone(), vec![*rows, k], Stored::Matrix { k, n }),
                _ => self.within(name.clone(), vec![*rows, k]),
            }
        }
    }

    /// A GPT-2 `Conv1D` weight, stored (in, out) as the matrix itself.
    pub fn conv1d_weight(&mut self, name: String, k: usize, n: usize) {
        self.push(name, vec![k, n], Stored::Matrix { k, n });
    }

    /// A tensor fused into the matrix before it at upload (`shape` as in the file).
    pub fn within(&mut self, name: String, shape: Vec<usize>) {
        self.push(name, shape, Stored::Within);
    }

    /// A vector kept in f32.
    pub fn vector(&mut self, name: String, len: usize) {
        self.push(name, vec![len], Stored::F32 { len });
    }

    /// A LayerNorm's weight and bias, (c) each.
    pub fn norm(&mut self, prefix: &str, c: usize) {
        self.vector(format!("{prefix}.weight"), c);
        self.vector(format!("{prefix}.bias"), c);
    }

    /// An (rows, c) table kept in f32, of which `used` rows are uploaded.
    pub fn table(&mut self, name: String, rows: usize, c: usize, used: usize) {
        self.push(name, vec![rows, c], Stored::F32 { len: used * c });
    }

    /// An f32 buffer made at upload rather than read from the file (no parameters).
    pub fn generated(&mut self, name: String, len: usize) {
        self.push(name, vec![0], Stored::Generated { len });
    }

    /// A (V, C) token embedding or LM head.
    pub fn embedding(&mut self, name: String, v: usize, c: usize) {
        self.push(name, vec![v, c], Stored::Embedding { v, c });
    }

    /// The (V, C) LM head `name`, where the checkpoint does not tie it to the token embedding.
    pub fn untied_head(&mut self, cfg: &Config, name: &str, c: usize) {
        if !cfg.tie_word_embeddings {
            self.embedding(name.into(), cfg.vocab_size, c);
        }
    }

    /// Number of parameters; `u64::MAX` on overflow (only an invalid config can).
    pub fn params(&self) -> u64 {
        self.0
            .iter()
            .try_fold(0u64, |acc, t| {
                let n = t
                    .shape
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
                acc.checked_add(n)
            })
            .unwrap_or(u64::MAX)
    }

    /// Bytes of weights on the GPU with matrices in `dtype`.
    pub fn gpu_bytes(&self, dtype: WeightDtype) -> u64 {
        self.0
            .iter()
            .map(|t| match t.stored {
                Stored::Matrix { k, n } => matrix_bytes(k, n, dtype),
                Stored::Embedding { v, c } => matrix_bytes(c, v, dtype),
                Stored::F32 { len } | Stored::Generated { len } => len as u64 * 4,
                Stored::Within => 0,
            })
            .sum()
    }
}
