// Temporary kernel probe (not committed): matvec with weights in a texture.
use std::time::Instant;
use wgpu::util::DeviceExt;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let k: u32 = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(768);
    let n: u32 = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(2304);
    let wg: u32 = std::env::args().nth(4).map(|s| s.parse().unwrap()).unwrap_or(16);
    let cols: u32 = std::env::args().nth(5).map(|s| s.parse().unwrap()).unwrap_or(8);
    let xuni = std::env::args().nth(6).is_some();
    let src = std::fs::read_to_string(&path).unwrap();
    let gpu = wgpt::Gpu::new(&wgpt::GpuOptions::default()).unwrap();
    let d = gpu.device();
    let m = d.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
    let p = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &m, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
    let tex = d.create_texture_with_data(gpu.queue(), &wgpu::TextureDescriptor { label: None, size: wgpu::Extent3d { width: n / 8, height: k, depth_or_array_layers: 1 }, mip_level_count: 1, sample_count: 1, dimension: wgpu::TextureDimension::D2, format: wgpu::TextureFormat::Rgba32Uint, usage: wgpu::TextureUsages::TEXTURE_BINDING, view_formats: &[] }, wgpu::util::TextureDataOrder::LayerMajor, &vec![0x3cu8; (k * n * 2) as usize]);
    let view = tex.create_view(&Default::default());
    let x = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&vec![1f32; if xuni { 16384 } else { k as usize }]), usage: if xuni { wgpu::BufferUsages::UNIFORM } else { wgpu::BufferUsages::STORAGE } });
    let y = d.create_buffer(&wgpu::BufferDescriptor { label: None, size: (n * 4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let u = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&[k, n, 0, 0]), usage: wgpu::BufferUsages::UNIFORM });
    let bg = d.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &p.get_bind_group_layout(0), entries: &[
        wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() },
        wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::TextureView(&view) },
        wgpu::BindGroupEntry { binding: 2, resource: x.as_entire_binding() },
        wgpu::BindGroupEntry { binding: 3, resource: y.as_entire_binding() }] });
    let groups = n.div_ceil(cols * wg);
    let reps = 20;
    for it in 0..2 {
        let t0 = Instant::now();
        for _ in 0..reps {
            let mut enc = d.create_command_encoder(&Default::default());
            { let mut pass = enc.begin_compute_pass(&Default::default()); pass.set_pipeline(&p); pass.set_bind_group(0, &bg, &[]); pass.dispatch_workgroups(groups, 1, 1); }
            gpu.queue().submit([enc.finish()]);
            d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        if it == 1 { println!("{path} {k}x{n}: {:.3} ms, {:.2} GB/s of f16 weights", s * 1e3, (k * n * 2) as f64 / s / 1e9); }
    }
}
