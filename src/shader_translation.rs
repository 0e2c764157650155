//! Every composed shader parses, validates and translates through naga to SPIR-V (Vulkan),
//! MSL (Metal) and HLSL (DX12), so those back ends are checked without their hardware. Every
//! variant: the cooperative kernel family, and the barrier-free one with subgroup load sharing
//! (MSL 2.2, HLSL shader model 6.0) and without. (A unit test: the shader sources are internal.)

use crate::kernels::{shader_sources, KernelFamily, ShaderOptions};

#[test]
fn shaders_translate_to_spirv_msl_hlsl() {
    translate_all(ShaderOptions {
        family: KernelFamily::Cooperative,
        subgroups: false,
    });
    for subgroups in [false, true] {
        translate_all(ShaderOptions {
            family: KernelFamily::BarrierFree,
            subgroups,
        });
    }
}

fn translate_all(opts: ShaderOptions) {
    let sources = shader_sources(opts);
    assert!(sources.len() >= 7);
    for (name, src) in sources {
        let name = format!("{name} ({opts:?})");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation: {e:?}"));
        let spv =
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
        assert!(spv.len() > 100);
        let (msl, _) = naga::back::msl::write_string(
            &module,
            &info,
            &naga::back::msl::Options {
                lang_version: (2, 2),
                ..Default::default()
            },
            &naga::back::msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
        assert!(msl.contains("kernel"), "{name}: MSL has no kernel");
        let mut hlsl = String::new();
        let (opts, popts) = (
            naga::back::hlsl::Options {
                shader_model: naga::back::hlsl::ShaderModel::V6_0,
                ..Default::default()
            },
            naga::back::hlsl::PipelineOptions::default(),
        );
        let mut w = naga::back::hlsl::Writer::new(&mut hlsl, &opts, &popts);
        w.write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
        assert!(
            hlsl.contains("[numthreads("),
            "{name}: HLSL has no compute entry"
        );
    }
}
