//! `wgpt info`: adapters, the chosen one's limits and features, and the model's footprint.

use clap::Args;

use super::{DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let all = wgpt::Gpu::adapters(&a.device.options())?;
    println!("adapters:");
    for s in &all {
        println!("  {s}  driver: {}", s.driver);
    }
    let gpu = a.device.gpu()?;
    let l = gpu.limits();
    println!("chosen: {}", gpu.adapter());
    println!(
        "  max_storage_buffer_binding_size {}",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size {}", l.max_buffer_size);
    println!(
        "  max_compute_workgroup_storage_size {}",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    let named = [
        (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
    ];
    let on: Vec<&str> = named
        .iter()
        .filter(|(f, _)| gpu.features().contains(*f))
        .map(|(_, n)| *n)
        .collect();
    println!(
        "  features used: {}",
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    );
    let model = a.model.load(a.model.open()?, &gpu)?;
    let c = model.config();
    let i = model.info();
    println!("model: {}", i.origin);
    println!("  model_type {} ({:?})", c.model_type(), c.family);
    println!(
        "  n_layer {} n_head {} n_embd {} n_inner {} n_positions {} vocab_size {}",
        c.n_layer, c.n_head, c.n_embd, c.n_inner, c.n_positions, c.vocab_size
    );
    println!(
        "  activation {:?}, tied head {}",
        c.activation, c.tie_word_embeddings
    );
    println!("  parameters {}", i.n_params);
    let dts: Vec<String> = i.file_dtypes.iter().map(|d| d.to_string()).collect();
    println!("  file dtypes {}; on GPU {}", dts.join(", "), i.dtype);
    println!("  kernels {}", i.kernels);
    println!(
        "  weights on GPU {} bytes ({:.1} MB)",
        i.weight_bytes,
        i.weight_bytes as f64 / 1e6
    );
    Ok(())
}
