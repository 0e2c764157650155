//! Weights on the GPU, in the one layout every family's forward pass reads ([`Weights`]:
//! embeddings, [`Layer`]s of linear layers and norms, the final norm, the head); matrices as
//! textures (see `kernels::WeightMatrix`). [`crate::model::upload::Uploader`] fills them.

use crate::kernels::{WeightDtype, WeightMatrix};

/// A linear layer: W (K, N) in the storage format, bias (N) f32 (zeros where it has none).
pub(crate) struct Linear {
    pub w: WeightMatrix,
    pub b: wgpu::Buffer,
}

/// LayerNorm gamma and beta, (C) f32 each; or RMSNorm's weight, with zeros for beta.
pub(crate) struct Norm {
    pub gamma: wgpu::Buffer,
    pub beta: wgpu::Buffer,
    /// RMSNorm: no centring, and beta is zeros.
    pub rms: bool,
}

/// A (V, C) matrix stored transposed, (C, V), and split by vocabulary ranges so that no
/// texture exceeds the device's limits.
pub(crate) struct RowChunks {
    /// ((C, rows) matrix, first row, one past the last row)
    pub chunks: Vec<(WeightMatrix, usize, usize)>,
}

/// One decoder layer: attention and feed-forward, each with its norm. Every family has these
/// six; the order they run in is the family's forward pass. What only some families have
/// (Gemma's post-attention and post-feed-forward norms, Qwen3's and Gemma's q / k norms, …)
/// goes in `norms` and `linears` under names the family chooses, so adding one touches no
/// other family.
pub(crate) struct Layer {
    pub attn_norm: Norm,
    /// (C, Q + 2K): queries, keys, values, each head-major.
    pub qkv: Linear,
    /// (Q, C)
    pub attn_out: Linear,
    pub mlp_norm: Norm,
    /// (C, F), or (C, 2F) gate | up for a gated feed-forward.
    pub mlp_up: Linear,
    /// (F, C)
    pub mlp_down: Linear,
    /// The family's further norms, by name (Qwen3's `q_norm`, `k_norm`; Gemma's post-norms).
    pub norms: Vec<(&'static str, Norm)>,
    /// The family's further linear layers, by name.
    #[allow(dead_code)]
    pub linears: Vec<(&'static str, Linear)>,
}

pub(crate) struct Weights {
    /// (V, E) token embedding; E is the hidden size unless `project_in` maps it.
    pub wte: RowChunks,
    /// (n_positions, C) f32 learned positions, for families that have them.
    pub wpe: Option<wgpu::Buffer>,
    /// (n_positions, rotary_dims / 2) rotary (cos, sin), for families with rotary positions.
    pub rope: Option<wgpu::Buffer>,
    /// The rotary table of local (sliding-window) layers where it differs (Gemma 3's
    /// `rope_local_base_freq`).
    pub rope_local: Option<wgpu::Buffer>,
    /// The token embedding's multiplier (Gemma: √C in the checkpoint's dtype), else 1.
    pub embed_scale: f32,
    /// (E, C) and (C, E): OPT's projections where the embedding width E differs from C.
    pub project_in: Option<Linear>,
    pub project_out: Option<Linear>,
    pub layers: Vec<Layer>,
    /// The LayerNorm after the last layer, where the family has one.
    pub final_norm: Option<Norm>,
    /// Untied LM head; `None` means the head is `wte`.
    pub lm_head: Option<RowChunks>,
    /// (max(V, F, C)) zeros: the bias of layers without one.
    pub zeros: wgpu::Buffer,
    /// Bytes allocated on the GPU for weights.
    pub bytes: u64,
}

impl Layer {
    /// The family's further norm `name` (see [`Layer::norms`]); the family's upload made it.
    pub fn norm(&self, name: &str) -> &Norm {
        self.norms
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, n)| n)
            .expect("the family uploaded the norms its forward pass reads")
    }
}

impl Weights {
    /// The parts every family has; positions, rotary table and projections are set by the
    /// families that have them (`Weights { wpe: Some(…), ..Weights::new(…) }`).
    pub fn new(
        wte: RowChunks,
        layers: Vec<Layer>,
        final_norm: Option<Norm>,
        lm_head: Option<RowChunks>,
        zeros: wgpu::Buffer,
    ) -> Self {
        Weights {
            wte,
            wpe: None,
            rope: None,
            rope_local: None,
            embed_scale: 1.0,
            project_in: None,
            project_out: None,
            layers,
            final_norm,
            lm_head,
            zeros,
            bytes: 0,
        }
    }

    /// Every storage format of the weight matrices, in `WeightDtype::ALL`'s order.
    pub fn storage_formats(&self) -> Vec<WeightDtype> {
        let mut seen = std::collections::HashSet::new();
        let mut add = |m: &WeightMatrix| seen.extend(m.parts.iter().map(|p| p.dtype));
        for chunks in [Some(&self.wte), self.lm_head.as_ref()]
            .into_iter()
            .flatten()
        {
            chunks.chunks.iter().for_each(|c| add(&c.0));
        }
        for l in &self.layers {
            [&l.qkv, &l.attn_out, &l.mlp_up, &l.mlp_down]
                .into_iter()
                .for_each(|x| add(&x.w));
        }
        for x in [&self.project_in, &self.project_out].into_iter().flatten() {
            add(&x.w);
        }
        WeightDtype::ALL
            .into_iter()
            .filter(|d| seen.contains(d))
            .collect()
    }

    /// The LM head matrix (the tied `wte` unless the model has its own).
    pub fn head(&self) -> &RowChunks {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }
}
