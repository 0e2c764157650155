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

mod argmax;
mod attention;
mod embed;
mod gated;
mod kv_store;
mod layer_norm;
mod matmul;
mod positions;
mod recorder;
mod rope;
#[cfg(test)]
mod tests;
mod weight_matrix;

pub(crate) use argmax::{argmax, winner, Argmax, ARGMAX_BYTES};
pub(crate) use attention::{attention, attention_rows, Heads};
pub(crate) use embed::embed;
pub(crate) use gated::gated;
pub(crate) use kv_store::kv_store;
pub(crate) use layer_norm::layer_norm;
pub(crate) use matmul::{matmul, FusedNorm, MatmulDispatch, MatmulSpec, X_WINDOW};
pub(crate) use positions::add_positions;
pub use recorder::Profiler;
pub(crate) use recorder::Recorder;
pub(crate) use rope::{rope, rope_table};
pub(crate) use weight_matrix::{matrix_bytes, storage_for, texel_rows, Columns, WeightMatrix};

use crate::format::DType;
use crate::gpu::Gpu;

/// How weight matrices are stored on the GPU. Arithmetic is f32 in every case; the block
/// formats are ggml's, read by the kernels as they are (`shaders/weights_quant.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (IEEE half).
    F16,
    /// ggml Q8_0: 8-bit weights with an f16 scale per 32 (8.5 bits per weight).
    Q8_0,
    /// ggml Q4_0: 4-bit weights with an f16 scale per 32 (4.5 bits per weight).
    Q4_0,
    /// ggml Q4_1 (GGUF files only).
    Q4_1,
    /// ggml Q5_0 (GGUF files only).
    Q5_0,
    /// ggml Q5_1 (GGUF files only).
    Q5_1,
    /// ggml Q4_K (GGUF files only).
    Q4K,
    /// ggml Q5_K (GGUF files only).
    Q5K,
    /// ggml Q6_K (GGUF files only).
    Q6K,
}

impl WeightDtype {
    /// Every storage format, in the order `shader_sources` lists their programs.
    pub const ALL: [WeightDtype; 10] = [
        WeightDtype::F32,
        WeightDtype::F16,
        WeightDtype::Q8_0,
        WeightDtype::Q4_0,
        WeightDtype::Q4_1,
        WeightDtype::Q5_0,
        WeightDtype::Q5_1,
        WeightDtype::Q4K,
        WeightDtype::Q5K,
        WeightDtype::Q6K,
    ];

    /// The block formats wgpt quantizes float weights to (`LoadOptions::dtype`, `--dtype`);
    /// the others are read from GGUF files only.
    pub const QUANTIZABLE: [WeightDtype; 2] = [WeightDtype::Q8_0, WeightDtype::Q4_0];

    /// The file type with the same encoding.
    pub fn file_dtype(self) -> DType {
        match self {
            WeightDtype::F32 => DType::F32,
            WeightDtype::F16 => DType::F16,
            WeightDtype::Q8_0 => DType::Q8_0,
            WeightDtype::Q4_0 => DType::Q4_0,
            WeightDtype::Q4_1 => DType::Q4_1,
            WeightDtype::Q5_0 => DType::Q5_0,
            WeightDtype::Q5_1 => DType::Q5_1,
            WeightDtype::Q4K => DType::Q4K,
            WeightDtype::Q5K => DType::Q5K,
            WeightDtype::Q6K => DType::Q6K,
        }
    }

    /// The storage format that keeps a file type's values exactly: itself for f16 and the
    /// block formats, f32 for f32 and bf16.
    pub fn for_file(d: DType) -> WeightDtype {
        WeightDtype::ALL
            .into_iter()
            .find(|w| w.file_dtype() == d)
            .unwrap_or(WeightDtype::F32)
    }

    /// Whether this is a ggml block format.
    pub fn is_quantized(self) -> bool {
        self.file_dtype().is_quantized()
    }

    /// The name `--dtype` takes and `wgpt info` prints.
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Q8_0 => "q8_0",
            WeightDtype::Q4_0 => "q4_0",
            WeightDtype::Q4_1 => "q4_1",
            WeightDtype::Q5_0 => "q5_0",
            WeightDtype::Q5_1 => "q5_1",
            WeightDtype::Q4K => "q4_k",
            WeightDtype::Q5K => "q5_k",
            WeightDtype::Q6K => "q6_k",
        }
    }

    /// The weight-access WGSL of this format.
    fn reader(self) -> String {
        match self {
            WeightDtype::F32 => WEIGHTS_F32.to_string(),
            WeightDtype::F16 => WEIGHTS_F16.to_string(),
            q => {
                let layout =
                    crate::format::quant::pack::Layout::of(q.file_dtype()).expect("block format");
                format!("{}{WEIGHTS_QUANT}", layout.wgsl_constants())
            }
        }
    }
}

/// How the KV cache stores keys and values (`--kv`). Attention's arithmetic is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KvDtype {
    /// 32-bit floats: exact, twice the memory.
    F32,
    /// 16-bit floats (IEEE half, rounded to nearest): half the memory and half the bytes decode
    /// attention reads. The default on every adapter, as in llama.cpp.
    #[default]
    F16,
}

impl KvDtype {
    /// Bytes of one stored key or value feature.
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }

    /// The name `--kv` takes and `wgpt info` prints.
    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
        }
    }

    /// Parses `f32` / `f16`.
    pub fn parse(name: &str) -> Option<Self> {
        [KvDtype::F32, KvDtype::F16]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The cache-access WGSL (`kv_load`, `kv_store`, `kv_round` and the `KV` binding).
    fn source(self) -> &'static str {
        match self {
            KvDtype::F32 => KV_F32,
            KvDtype::F16 => KV_F16,
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const ACTIVATIONS: &str = include_str!("../../shaders/activations.wgsl");
const WEIGHTS_F32: &str = include_str!("../../shaders/weights_f32.wgsl");
const WEIGHTS_F16: &str = include_str!("../../shaders/weights_f16.wgsl");
const WEIGHTS_QUANT: &str = include_str!("../../shaders/weights_quant.wgsl");
const TEXEL_SAMPLED: &str = include_str!("../../shaders/texel_sampled.wgsl");
const TEXEL_STORAGE: &str = include_str!("../../shaders/texel_storage.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const MATVEC: &str = include_str!("../../shaders/matvec.wgsl");
const MATVEC_QUANT: &str = include_str!("../../shaders/matvec_quant.wgsl");
const MATMUL_BLOCK: &str = include_str!("../../shaders/matmul_block.wgsl");
const MATMUL_TILE: &str = include_str!("../../shaders/matmul_tile.wgsl");
const EPILOGUE: &str = include_str!("../../shaders/epilogue.wgsl");
const FUSED_NORM: &str = include_str!("../../shaders/fused_norm.wgsl");
const MATMUL_PARAMS: &str = include_str!("../../shaders/matmul_params.wgsl");
const LANES_SUBGROUP: &str = include_str!("../../shaders/lanes_subgroup.wgsl");
const LANES_PLAIN: &str = include_str!("../../shaders/lanes_plain.wgsl");
const LAYER_NORM: &str = include_str!("../../shaders/layer_norm.wgsl");
const EMBED: &str = include_str!("../../shaders/embed.wgsl");
const KV_STORE: &str = include_str!("../../shaders/kv_store.wgsl");
const KV_F32: &str = include_str!("../../shaders/kv_f32.wgsl");
const KV_F16: &str = include_str!("../../shaders/kv_f16.wgsl");
/// Stands in a program's parts for the KV cache's access file (kv_f32.wgsl / kv_f16.wgsl),
/// which `compose` puts there.
const KV_CACHE: &str = "// the KV cache's access functions\n";
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const ATTENTION_ROWS: &str = include_str!("../../shaders/attention_rows.wgsl");
const ATTENTION_DECODE: &str = include_str!("../../shaders/attention_decode.wgsl");
const ATTENTION_PARAMS: &str = include_str!("../../shaders/attention_params.wgsl");
const ONLINE_SOFTMAX: &str = include_str!("../../shaders/online_softmax.wgsl");
const WORKGROUP_REDUCE: &str = include_str!("../../shaders/workgroup_reduce.wgsl");
const MATMUL_WIDE: &str = include_str!("../../shaders/matmul_wide.wgsl");
const MATVEC_WIDE: &str = include_str!("../../shaders/matvec_wide.wgsl");
const LAYER_NORM_WIDE: &str = include_str!("../../shaders/layer_norm_wide.wgsl");
const ATTENTION_WIDE: &str = include_str!("../../shaders/attention_wide.wgsl");
const ARGMAX_WIDE: &str = include_str!("../../shaders/argmax_wide.wgsl");
const ARGMAX_COMMON: &str = include_str!("../../shaders/argmax_common.wgsl");
const ARGMAX_PICK: &str = include_str!("../../shaders/argmax_pick.wgsl");
const ARGMAX_REDUCE: &str = include_str!("../../shaders/argmax_reduce.wgsl");
const ROPE: &str = include_str!("../../shaders/rope.wgsl");
const POSITIONS: &str = include_str!("../../shaders/positions.wgsl");
const GATED: &str = include_str!("../../shaders/gated.wgsl");

/// The two kernel families: every operation exists in both, with the same bindings and the
/// same results (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelFamily {
    /// Workgroup tiles and reductions through workgroup memory: for hardware GPUs.
    Cooperative,
    /// Register-blocked kernels without workgroup memory or barriers: for software adapters.
    BarrierFree,
}

impl KernelFamily {
    /// Both families, in the order tests run them.
    pub const ALL: [KernelFamily; 2] = [KernelFamily::BarrierFree, KernelFamily::Cooperative];

    /// The name `--kernels` takes and `wgpt info` prints.
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Cooperative => "cooperative",
            KernelFamily::BarrierFree => "barrier-free",
        }
    }

    /// The family of a `--kernels` name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for KernelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which kernel family to run, and the optional adapter features the barrier-free family uses
/// where present (each with a portable fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderOptions {
    /// The kernel family; see the module header.
    pub family: KernelFamily,
    /// The barrier-free matmuls and attention share loads through subgroup broadcasts
    /// (`lanes_subgroup.wgsl`); needs SUBGROUP and subgroups of at least 8 invocations.
    pub subgroups: bool,
}

impl ShaderOptions {
    /// The barrier-free family with nothing beyond core WebGPU.
    #[cfg(test)]
    pub const PORTABLE: ShaderOptions = ShaderOptions {
        family: KernelFamily::BarrierFree,
        subgroups: false,
    };

    /// The family that suits the adapter (cooperative unless it is a CPU), with every optional
    /// feature the device offers.
    pub fn best(gpu: &Gpu) -> Self {
        let f = gpu.features();
        ShaderOptions {
            family: if gpu.is_software() {
                KernelFamily::BarrierFree
            } else {
                KernelFamily::Cooperative
            },
            subgroups: f.contains(wgpu::Features::SUBGROUP) && gpu.subgroup_min_size() >= 8,
        }
    }
}

/// Every composed shader program of the options' family as (name, WGSL source), e.g. for
/// translation tests. Both families use the same names for the same operations (`embed` and
/// `kv_store` serve both; `matmul_block` and `attention_rows` exist only in the barrier-free
/// family, `argmax` and `argmax_pick` only in the cooperative one). A program that reads a weight matrix exists once
/// per storage format, named `{op}_{format}`.
#[cfg(test)]
pub(crate) fn shader_sources(opts: ShaderOptions) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, weights, parts) in programs(opts) {
        if weights {
            for dt in WeightDtype::ALL {
                let src = compose(opts, &parts, Some(dt), KvDtype::F32);
                out.push((format!("{name}_{dt}"), src));
            }
        } else if parts.contains(&KV_CACHE) {
            for kv in [KvDtype::F32, KvDtype::F16] {
                out.push((format!("{name}_kv_{kv}"), compose(opts, &parts, None, kv)));
            }
        } else {
            out.push((name.to_string(), compose(opts, &parts, None, KvDtype::F32)));
        }
    }
    out
}

/// One program's source: common.wgsl, the family's weight-texture binding and the format's
/// weight reader if it reads weights, `parts` (the barrier-free decode kernel of the block
/// formats is `matvec_quant.wgsl`; [`KV_CACHE`] becomes the access file of `kv`).
fn compose(
    opts: ShaderOptions,
    parts: &[&str],
    weights: Option<WeightDtype>,
    kv: KvDtype,
) -> String {
    let texels = match (weights, opts.family) {
        (None, _) => "",
        (Some(_), KernelFamily::Cooperative) => TEXEL_SAMPLED,
        (Some(_), KernelFamily::BarrierFree) => TEXEL_STORAGE,
    };
    let reader = weights.map(WeightDtype::reader).unwrap_or_default();
    let quantized = weights.is_some_and(WeightDtype::is_quantized);
    [COMMON, texels, reader.as_str()]
        .into_iter()
        .chain(parts.iter().map(|&p| match p {
            MATVEC if quantized => MATVEC_QUANT,
            KV_CACHE => kv.source(),
            p => p,
        }))
        .collect()
}

/// (name, reads a weight matrix, parts after common.wgsl) of every program of the family.
fn programs(opts: ShaderOptions) -> Vec<(&'static str, bool, Vec<&'static str>)> {
    let lanes = if opts.subgroups {
        LANES_SUBGROUP
    } else {
        LANES_PLAIN
    };
    let tile = |op, lanes| vec![ACTIVATIONS, MATMUL_PARAMS, EPILOGUE, lanes, MATMUL_TILE, op];
    match opts.family {
        KernelFamily::Cooperative => vec![
            (
                "matmul",
                true,
                vec![ACTIVATIONS, MATMUL_PARAMS, MATMUL_WIDE],
            ),
            (
                "matvec",
                true,
                vec![ACTIVATIONS, MATMUL_PARAMS, WORKGROUP_REDUCE, MATVEC_WIDE],
            ),
            ("embed", true, vec![EMBED]),
            ("layer_norm", false, vec![WORKGROUP_REDUCE, LAYER_NORM_WIDE]),
            ("kv_store", false, vec![KV_CACHE, KV_STORE]),
            (
                "attention",
                false,
                vec![ATTENTION_PARAMS, KV_CACHE, WORKGROUP_REDUCE, ATTENTION_WIDE],
            ),
            (
                "argmax",
                false,
                vec![ARGMAX_COMMON, ARGMAX_REDUCE, ARGMAX_WIDE],
            ),
            (
                "argmax_pick",
                false,
                vec![ARGMAX_COMMON, ARGMAX_REDUCE, ARGMAX_PICK],
            ),
            ("rope", false, vec![ROPE]),
            ("positions", false, vec![POSITIONS]),
            ("gated", false, vec![ACTIVATIONS, GATED]),
        ],
        KernelFamily::BarrierFree => vec![
            ("matmul", true, tile(MATMUL, lanes)),
            ("matmul_block", true, tile(MATMUL_BLOCK, lanes)),
            (
                "matvec",
                true,
                vec![
                    ACTIVATIONS,
                    MATMUL_PARAMS,
                    EPILOGUE,
                    lanes,
                    FUSED_NORM,
                    MATVEC,
                ],
            ),
            ("embed", true, vec![EMBED]),
            ("layer_norm", false, vec![LAYER_NORM]),
            ("kv_store", false, vec![KV_CACHE, KV_STORE]),
            (
                "attention",
                false,
                vec![ATTENTION_PARAMS, KV_CACHE, lanes, ONLINE_SOFTMAX, ATTENTION],
            ),
            // With subgroups, attention_decode.wgsl: it serves single-token steps too.
            (
                "attention_rows",
                false,
                if opts.subgroups {
                    vec![ATTENTION_PARAMS, KV_CACHE, ONLINE_SOFTMAX, ATTENTION_DECODE]
                } else {
                    vec![ATTENTION_PARAMS, KV_CACHE, ONLINE_SOFTMAX, ATTENTION_ROWS]
                },
            ),
            ("rope", false, vec![ROPE]),
            ("positions", false, vec![POSITIONS]),
            ("gated", false, vec![ACTIVATIONS, GATED]),
        ],
    }
}

/// Compiles one composed program (the weight reader of `weights` where it reads weights, the
/// cache access of `kv` where it reads the KV cache).
fn compile(
    gpu: &Gpu,
    opts: ShaderOptions,
    name: &str,
    weights: Option<WeightDtype>,
    kv: KvDtype,
) -> wgpu::ComputePipeline {
    let (_, _, parts) = programs(opts)
        .into_iter()
        .find(|p| p.0 == name)
        .expect("a program of the family");
    let source = compose(opts, &parts, weights, kv);
    let label = match weights {
        Some(dt) => format!("{name}_{dt}"),
        None if parts.contains(&KV_CACHE) => format!("{name}_kv_{kv}"),
        None => name.to_string(),
    };
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // Bounds checks stay on. Two other checks are dropped because every kernel meets their
    // conditions: loops are `for` loops over uniform or constant bounds (no loop bounding
    // counter needed), and integer `/` and `%` divide by constants or by uniforms the host
    // makes ≥ 1 (attention's query heads per key/value head), so no division-by-zero guard is
    // needed. Measured on lavapipe: prefill 1.35x, decode unchanged (docs/benchmarks.md).
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks.int_div_checks = false;
    // SAFETY: the conditions above are what these two flags require of the shaders.
    let module = unsafe { gpu.device.create_shader_module_trusted(desc, checks) };
    gpu.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        })
}

/// The pipelines of one operation that reads a weight matrix, one per storage format,
/// compiled the first time a model asks for that format (and cached on the [`Gpu`]).
pub(crate) struct WeightedPipelines {
    gpu: Gpu,
    opts: ShaderOptions,
    op: &'static str,
}

impl WeightedPipelines {
    /// The pipeline for weights stored as `dtype`.
    pub fn get(&self, dtype: WeightDtype) -> wgpu::ComputePipeline {
        let key = format!("{}_{dtype} {:?}", self.op, self.opts);
        self.gpu.pipeline(&key, || {
            compile(&self.gpu, self.opts, self.op, Some(dtype), KvDtype::F32)
        })
    }
}

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
            let key = match name {
                "kv_store" | "attention" | "attention_rows" => format!("{name} {opts:?} kv {kv}"),
                _ => format!("{name} {opts:?}"),
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
            embed: weighted("embed"),
            layer_norm: make("layer_norm"),
            kv_store: make("kv_store"),
            attention: make("attention"),
            attention_rows: (!cooperative).then(|| make("attention_rows")),
            rope: make("rope"),
            positions: make("positions"),
            gated: make("gated"),
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
    /// (x, T) for batches of more than one token, nothing for a single token (a step whose
    /// work the following kernels do themselves, see `Kernels::fuses_decode_norm`).
    BatchTokens { x: u32 },
    /// (x, ceil(T / 64)): cooperative matmul tiles over the batch's tokens.
    TokenTiles { x: u32 },
    /// (x, ceil(n_rows / 64)): cooperative matmul tiles over the LM-head rows.
    RowTiles { x: u32 },
    /// (ceil(T / 64), y).
    TokenGroups { y: u32 },
    /// (ceil(T / 64), y) for batches of more than one token, nothing for a single token (as
    /// `BatchTokens`).
    BatchTokenGroups { y: u32 },
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
            Grid::BatchTokens { x } => (x, if n_tokens > 1 { n_tokens } else { 0 }, 1),
            Grid::TokenTiles { x } => (x, n_tokens.div_ceil(64), 1),
            Grid::RowTiles { x } => (x, n_rows.div_ceil(64), 1),
            Grid::TokenGroups { y } => (n_tokens.div_ceil(64), y, 1),
            Grid::BatchTokenGroups { y } => match n_tokens {
                0 | 1 => (0, y, 1),
                t => (t.div_ceil(64), y, 1),
            },
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
