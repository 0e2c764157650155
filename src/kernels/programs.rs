//! The WGSL programs of each kernel family, composed from `shaders/` (common.wgsl, the weight
//! reader of a storage format, the KV-cache access of a cache format, the helpers, the op),
//! compiled on first use and cached on the [`Gpu`].

use super::formats::{KvDtype, WeightDtype};
use crate::gpu::Gpu;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const ACTIVATIONS: &str = include_str!("../../shaders/activations.wgsl");
pub(super) const WEIGHTS_F32: &str = include_str!("../../shaders/weights_f32.wgsl");
pub(super) const WEIGHTS_F16: &str = include_str!("../../shaders/weights_f16.wgsl");
pub(super) const WEIGHTS_QUANT: &str = include_str!("../../shaders/weights_quant.wgsl");
const TEXEL_SAMPLED: &str = include_str!("../../shaders/texel_sampled.wgsl");
const TEXEL_STORAGE: &str = include_str!("../../shaders/texel_storage.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const MATVEC: &str = include_str!("../../shaders/matvec.wgsl");
const MATVEC_QUANT: &str = include_str!("../../shaders/matvec_quant.wgsl");
const MATMUL_BLOCK: &str = include_str!("../../shaders/matmul_block.wgsl");
const MATMUL_TILE: &str = include_str!("../../shaders/matmul_tile.wgsl");
const EPILOGUE: &str = include_str!("../../shaders/epilogue.wgsl");
const STORE_F32: &str = include_str!("../../shaders/store_f32.wgsl");
const STORE_VEC4: &str = include_str!("../../shaders/store_vec4.wgsl");
const FUSED_NORM: &str = include_str!("../../shaders/fused_norm.wgsl");
const MATMUL_PARAMS: &str = include_str!("../../shaders/matmul_params.wgsl");
const LANES_SUBGROUP: &str = include_str!("../../shaders/lanes_subgroup.wgsl");
const LANES_PLAIN: &str = include_str!("../../shaders/lanes_plain.wgsl");
const LAYER_NORM: &str = include_str!("../../shaders/layer_norm.wgsl");
const EMBED: &str = include_str!("../../shaders/embed.wgsl");
const KV_STORE: &str = include_str!("../../shaders/kv_store.wgsl");
pub(super) const KV_F32: &str = include_str!("../../shaders/kv_f32.wgsl");
pub(super) const KV_F16: &str = include_str!("../../shaders/kv_f16.wgsl");
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
const HEAD_NORM: &str = include_str!("../../shaders/head_norm.wgsl");
const SOFTCAP: &str = include_str!("../../shaders/softcap.wgsl");

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
pub(crate) struct ShaderOptions {
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
/// `kv_store` serve both; `matmul_block`, the `_vec4` matmuls and `attention_rows` exist only
/// in the barrier-free family, `argmax` and `argmax_pick` only in the cooperative one). A
/// program that reads a weight matrix exists once per storage format, named `{op}_{format}`.
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
    let tile = |op, store| {
        vec![
            ACTIVATIONS,
            MATMUL_PARAMS,
            EPILOGUE,
            store,
            lanes,
            MATMUL_TILE,
            op,
        ]
    };
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
            ("head_norm", false, vec![HEAD_NORM]),
            ("softcap", false, vec![SOFTCAP]),
        ],
        KernelFamily::BarrierFree => vec![
            ("matmul", true, tile(MATMUL, STORE_F32)),
            ("matmul_block", true, tile(MATMUL_BLOCK, STORE_F32)),
            // The same, storing four columns at a time (outputs aligned to 16 bytes).
            ("matmul_vec4", true, tile(MATMUL, STORE_VEC4)),
            ("matmul_block_vec4", true, tile(MATMUL_BLOCK, STORE_VEC4)),
            (
                "matvec",
                true,
                vec![
                    ACTIVATIONS,
                    MATMUL_PARAMS,
                    EPILOGUE,
                    STORE_F32,
                    lanes,
                    FUSED_NORM,
                    MATVEC,
                ],
            ),
            ("embed", true, vec![EMBED]),
            ("layer_norm", false, vec![lanes, LAYER_NORM]),
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
            ("head_norm", false, vec![HEAD_NORM]),
            ("softcap", false, vec![SOFTCAP]),
        ],
    }
}

/// Compiles one composed program (the weight reader of `weights` where it reads weights, the
/// cache access of `kv` where it reads the KV cache).
/// Whether program `name` reads or writes the KV cache (its parts hold [`KV_CACHE`]): the
/// programs that differ between cache formats.
pub(super) fn reads_kv_cache(opts: ShaderOptions, name: &str) -> bool {
    programs(opts)
        .iter()
        .any(|p| p.0 == name && p.2.contains(&KV_CACHE))
}

pub(super) fn compile(
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
    pub(super) gpu: Gpu,
    pub(super) opts: ShaderOptions,
    pub(super) op: &'static str,
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
