// Temporary kernel probe (not committed): 8-row block matmul, X from storage or uniform.
use std::time::Instant;
use wgpu::util::DeviceExt;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let k: u32 = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(768);
    let n: u32 = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(2304);
    let rows: u32 = std::env::args().nth(4).map(|s| s.parse().unwrap()).unwrap_or(128);
    let xuni = std::env::args().nth(5).is_some();
    let src = std::fs::read_to_string(&path).unwrap();
    let gpu = wgpt::Gpu::new(&wgpt::GpuOptions::default()).unwrap();
    let d = gpu.device();
    let m = d.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
    let p = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &m, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
    let w = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &vec![0x3cu8; (k * n * 2) as usize], usage: wgpu::BufferUsages::STORAGE });
    let x = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&vec![1f32; (rows * k) as usize + 16384]), usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM });
    let y = d.create_buffer(&wgpu::BufferDescriptor { label: None, size: (rows * n * 4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let u = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&[k, n, 0, 0]), usage: wgpu::BufferUsages::UNIFORM });
    let block = 8 * k as u64 * 4;
    let nb = rows / 8;
    let bgs: Vec<_> = (0..nb).map(|b| d.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &p.get_bind_group_layout(0), entries: &[
        wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() },
        wgpu::BindGroupEntry { binding: 1, resource: w.as_entire_binding() },
        wgpu::BindGroupEntry { binding: 2, resource: if xuni { wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &x, offset: b as u64 * block, size: std::num::NonZeroU64::new(65536) }) } else { x.as_entire_binding() } },
        wgpu::BindGroupEntry { binding: 3, resource: y.as_entire_binding() }] })).collect();
    let reps = 5;
    for it in 0..2 {
        let t0 = Instant::now();
        for _ in 0..reps {
            let mut enc = d.create_command_encoder(&Default::default());
            { let mut pass = enc.begin_compute_pass(&Default::default()); pass.set_pipeline(&p);
              if xuni { for b in 0..nb { pass.set_bind_group(0, &bgs[b as usize], &[]); pass.dispatch_workgroups(n / 128, 1, 1); } }
              else { pass.set_bind_group(0, &bgs[0], &[]); pass.dispatch_workgroups(n / 128, nb, 1); } }
            gpu.queue().submit([enc.finish()]);
            d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        if it == 1 { println!("{path} {rows}x{k}x{n}: {:.3} ms, {:.2} GFLOP/s", s * 1e3, 2.0 * (rows * k) as f64 * n as f64 / s / 1e9); }
    }
}
