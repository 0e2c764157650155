//! Compute pipelines, one per WGSL operation, and [`Dispatch`]: a pipeline with its bind group
//! and grid rule, built once per session and encoded every step.
//!
//! Shader sources are composed from `shaders/`: `common.wgsl` (the per-step uniform), the
//! weight-access file for the storage dtype where the op reads a weight matrix, the helpers the
//! op needs (`activations.wgsl`, `matmul_params.wgsl`, `workgroup_reduce.wgsl`, for the
//! barrier-free matmuls and attention the lane-sharing file and the shared tile), then the op
//! (see `shader_sources`). [`ShaderOptions`] picks one of two kernel families and the variants
//! that use optional features (subgroups):
//! - **barrier-free** (`matmul.wgsl`, `matvec.wgsl`, `layer_norm.wgsl`, `attention.wgsl`): few
//!   invocations, each with a register block of work and no workgroup memory. Software
//!   adapters (lavapipe) run one workgroup per CPU thread, 8 invocations per SIMD register, and
//!   barriers are costly there.
//! - **cooperative** (`*_wide.wgsl`, and `argmax_pick.wgsl`): many invocations share a row, a
//!   tile or a query through workgroup memory and barriers, which is what hardware GPUs need to
//!   fill their cores. Only this family takes greedy decoding's argmax on the GPU
//!   (`Kernels::argmax_on_gpu`).
//!
//! Layer: above `gpu` (and `format`, `error`, `util`); knows no model family, config or
//! session.

mod argmax;
mod attention;
mod embed;
mod formats;
mod gated;
mod head_norm;
mod kv_store;
mod layer_norm;
mod matmul;
mod positions;
mod programs;
mod recorder;
mod rope;
mod softcap;
mod step;
#[cfg(test)]
mod tests;
mod weight_matrix;

pub(crate) use argmax::{argmax, winner, Argmax, ARGMAX_BYTES};
pub(crate) use attention::{attention, attention_rows, Attend, Heads};
pub(crate) use embed::embed;
pub(crate) use gated::gated;
pub(crate) use head_norm::head_norm;
pub(crate) use kv_store::kv_store;
pub(crate) use layer_norm::layer_norm;
pub(crate) use matmul::{matmul, FusedNorm, MatmulDispatch, MatmulSpec, X_WINDOW};
pub(crate) use positions::add_positions;
pub(crate) use recorder::Profiling;
pub(crate) use recorder::Recorder;
pub(crate) use rope::{rope, rope_table};
pub(crate) use softcap::softcap;
pub(crate) use step::{step_uniform, RowMap, Step, MAX_ROWS};
pub(crate) use weight_matrix::{matrix_bytes, storage_for, texel_rows, Columns, WeightMatrix};

use crate::gpu::Gpu;
pub use formats::{KvDtype, WeightDtype};
#[cfg(test)]
pub(crate) use programs::shader_sources;
pub use programs::KernelFamily;
pub(crate) use programs::ShaderOptions;
use programs::{compile, reads_kv_cache, WeightedPipelines};

/// Every pipeline of one kernel family, taken from the [`Gpu`]'s cache: each (operation,
/// family, weight format) is compiled once per `Gpu` and shared by every model on it.
pub(crate) struct Kernels {
    /// The family: grids and launches differ between the two.
    pub family: KernelFamily,
    /// How the KV cache stores keys and values (the cache kernels' variant).
    pub kv: KvDtype,
    pub matmul: WeightedPipelines,
    pub matvec: WeightedPipelines,
    /// The barrier-free family's uniform-window prefill kernel (`None` when cooperative).
    pub matmul_block: Option<WeightedPipelines>,
    /// The barrier-free batch kernels with vec4 stores (`store_vec4.wgsl`), for outputs
    /// aligned to 16 bytes: `[matmul, matmul_block]` (`None` when cooperative).
    pub matmul_vec4: Option<[WeightedPipelines; 2]>,
    pub embed: WeightedPipelines,
    pub layer_norm: wgpu::ComputePipeline,
    pub kv_store: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    /// The barrier-free family's attention for a batch of sequences (`None` when cooperative:
    /// `attention_wide` serves both).
    pub attention_rows: Option<wgpu::ComputePipeline>,
    pub rope: wgpu::ComputePipeline,
    pub positions: wgpu::ComputePipeline,
    pub gated: wgpu::ComputePipeline,
    pub head_norm: wgpu::ComputePipeline,
    pub softcap: wgpu::ComputePipeline,
    /// The barrier-free kernels share loads through subgroup operations (`lanes_subgroup.wgsl`).
    subgroups: bool,
    /// Greedy decoding's argmax: candidates, then the winner (`None` when barrier-free).
    pub argmax: Option<[wgpu::ComputePipeline; 2]>,
}

impl Kernels {
    /// The pipelines of the options' family for a KV cache of `kv`, compiled on first use per
    /// `Gpu`; `opts.subgroups` must not be set where [`ShaderOptions::best`] does not set it
    /// (either family runs on any adapter).
    pub fn with_options(gpu: &Gpu, opts: ShaderOptions, kv: KvDtype) -> Self {
        log::info!("shader options: {opts:?}, KV cache {kv}");
        // Only the programs that touch the cache differ between KV cache formats.
        let make = |name: &str| {
            let key = match reads_kv_cache(opts, name) {
                true => format!("{name} {opts:?} kv {kv}"),
                false => format!("{name} {opts:?}"),
            };
            gpu.pipeline(&key, || compile(gpu, opts, name, None, kv))
        };
        let weighted = |op| WeightedPipelines {
            gpu: gpu.clone(),
            opts,
            op,
        };
        let cooperative = opts.family == KernelFamily::Cooperative;
        Kernels {
            family: opts.family,
            kv,
            matmul: weighted("matmul"),
            matvec: weighted("matvec"),
            matmul_block: (!cooperative).then(|| weighted("matmul_block")),
            matmul_vec4: (!cooperative)
                .then(|| [weighted("matmul_vec4"), weighted("matmul_block_vec4")]),
            embed: weighted("embed"),
            layer_norm: make("layer_norm"),
            kv_store: make("kv_store"),
            attention: make("attention"),
            attention_rows: (!cooperative).then(|| make("attention_rows")),
            rope: make("rope"),
            positions: make("positions"),
            gated: make("gated"),
            head_norm: make("head_norm"),
            softcap: make("softcap"),
            subgroups: opts.subgroups,
            argmax: cooperative.then(|| [make("argmax"), make("argmax_pick")]),
        }
    }

    /// Whether single-token steps skip the LayerNorm dispatch before a linear layer: the
    /// one-row matmul applies the LayerNorm itself ([`FusedNorm`]). The cooperative family
    /// always does; the barrier-free one where its lanes share loads through subgroups (every
    /// workgroup of 8 then recomputes the row's statistics for ~1/8 of a row's loads per
    /// invocation, less than a dispatch costs on lavapipe; without subgroups every invocation
    /// would load the whole row, twice). (Both families skip kv_store then: attention stores
    /// the token's key and value.)
    pub fn fuses_decode_norm(&self) -> bool {
        self.family == KernelFamily::Cooperative || self.subgroups
    }

    /// Whether `attention_rows` is `attention_decode.wgsl` (a workgroup per row and head, the
    /// barrier-free family with subgroups), which also serves one sequence's single-token
    /// steps.
    pub fn attention_decode(&self) -> bool {
        self.family == KernelFamily::BarrierFree && self.subgroups
    }

    /// Whether the LM head's one-row kernel also applies the final norm (see
    /// [`Kernels::fuses_decode_norm`]): the cooperative family's. The barrier-free head has
    /// hundreds of workgroups (8 columns per invocation), each of which would recompute the
    /// statistics, so the final norm stays a dispatch there.
    pub fn fuses_head_norm(&self) -> bool {
        self.family == KernelFamily::Cooperative
    }

    /// Whether greedy steps take their argmax on the GPU (`argmax*.wgsl`) and queue the next
    /// step ahead (the cooperative family). On lavapipe both cost more than reading the logits
    /// back and scanning them on the CPU (decode 11.4 against 13.5 tok/s, docs/benchmarks.md).
    pub fn argmax_on_gpu(&self) -> bool {
        self.argmax.is_some()
    }
}

/// How many workgroups a dispatch needs for a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Grid {
    /// (x, ceil(T / 8)): matmul over the batch's tokens.
    TokenBlocks { x: u32 },
    /// (x, ceil(n_rows / 8)): the LM head over the rows being read back.
    RowBlocks { x: u32 },
    /// (x, T).
    PerToken { x: u32 },
    /// (x, n_rows): per LM-head row.
    PerRow { x: u32 },
    /// (x, T) for batches of more than one token, nothing for a single token (a step whose
    /// work the following kernels do themselves, see `Kernels::fuses_decode_norm`).
    BatchTokens { x: u32 },
    /// (x, ceil(T / 64)): cooperative matmul tiles over the batch's tokens.
    TokenTiles { x: u32 },
    /// (x, ceil(n_rows / 64)): cooperative matmul tiles over the LM-head rows.
    RowTiles { x: u32 },
    /// (ceil(T / 8), y).
    QueryOctets { y: u32 },
    /// (x, 1, 1) whatever the batch.
    Fixed { x: u32 },
}

impl Grid {
    pub fn size(self, n_tokens: u32, n_rows: u32) -> (u32, u32, u32) {
        match self {
            Grid::TokenBlocks { x } => (x, n_tokens.div_ceil(8), 1),
            Grid::RowBlocks { x } => (x, n_rows.div_ceil(8), 1),
            Grid::PerToken { x } => (x, n_tokens, 1),
            Grid::PerRow { x } => (x, n_rows, 1),
            Grid::BatchTokens { x } => (x, if n_tokens > 1 { n_tokens } else { 0 }, 1),
            Grid::TokenTiles { x } => (x, n_tokens.div_ceil(64), 1),
            Grid::RowTiles { x } => (x, n_rows.div_ceil(64), 1),
            Grid::QueryOctets { y } => (n_tokens.div_ceil(8), y, 1),
            Grid::Fixed { x } => (x, 1, 1),
        }
    }
}

/// One recorded kernel launch: pipeline, bind group (made once) and grid rule.
pub(crate) struct Dispatch {
    pub name: &'static str,
    /// The model layer it serves, for profiles ("" when it serves none in particular).
    layer: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: Grid,
    _params: wgpu::Buffer,
}

impl Dispatch {
    /// Builds the bind group: binding 0 = step uniform, 1 = `params`, 2.. = `buffers`.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        name: &'static str,
        pipeline: &wgpu::ComputePipeline,
        step: &wgpu::Buffer,
        params: &P,
        buffers: &[&wgpu::Buffer],
        grid: Grid,
    ) -> Self {
        let resources = buffers.iter().map(|b| b.as_entire_binding()).collect();
        Self::with_resources(gpu, name, pipeline, step, params, resources, grid)
    }

    /// Like [`Dispatch::new`] with explicit resources (e.g. a window of a buffer).
    pub fn with_resources<P: bytemuck::Pod>(
        gpu: &Gpu,
        name: &'static str,
        pipeline: &wgpu::ComputePipeline,
        step: &wgpu::Buffer,
        params: &P,
        resources: Vec<wgpu::BindingResource<'_>>,
        grid: Grid,
    ) -> Self {
        let params = gpu.uniform(name, params);
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: step.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: params.as_entire_binding(),
            },
        ];
        for (i, resource) in resources.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 2 + i as u32,
                resource,
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            name,
            layer: "",
            pipeline: pipeline.clone(),
            bind_group,
            grid,
            _params: params,
        }
    }

    /// Names the layer this launch serves (`c_attn`, …) in profiles.
    pub fn for_layer(self, layer: &'static str) -> Self {
        Dispatch { layer, ..self }
    }

    /// Records the launch for a batch of `n_tokens` (and `n_rows` LM-head rows).
    pub fn encode(&self, rec: &mut Recorder<'_>, n_tokens: u32, n_rows: u32) {
        rec.dispatch(
            (self.name, self.layer),
            &self.pipeline,
            &self.bind_group,
            self.grid.size(n_tokens, n_rows),
        );
    }
}
