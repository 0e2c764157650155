//! A host program that shares its own wgpu device with wgpt (`Gpu::from_wgpu`): its
//! uncaptured-error handler and device-lost callback stay its own, its mistakes reach them
//! and never come back as wgpt errors, and wgpt's work raises nothing in them.

mod common;

use std::sync::{Arc, Mutex};

use common::{test_gpu, test_gpu_options};
use wgpt::wgpu; // the exact wgpu wgpt was built with
use wgpt::{Gpu, LoadOptions, Model, SamplerConfig};

/// A host device on the adapter the tests use, with the host's own error handler and
/// device-lost callback installed before wgpt sees it.
struct Host {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<wgpu::DeviceLostReason>>>,
}

fn host() -> Option<Host> {
    // Skips (or fails under CI=true) like every GPU test when there is no adapter.
    test_gpu()?;
    let adapter = Gpu::choose_adapter(&test_gpu_options()).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        sink.lock().unwrap().push(e.to_string());
    }));
    let lost = Arc::new(Mutex::new(None));
    let lost_sink = lost.clone();
    device.set_device_lost_callback(move |reason, _msg| {
        *lost_sink.lock().unwrap() = Some(reason);
    });
    Some(Host {
        device,
        queue,
        info: adapter.get_info(),
        errors,
        lost,
    })
}

/// An invalid buffer: MAP_READ and MAP_WRITE together are a validation error.
fn invalid_buffer(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host's mistake"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: false,
    })
}

#[test]
fn the_hosts_error_handler_keeps_the_hosts_errors_and_wgpt_keeps_its_own() {
    let Some(h) = host() else { return };
    let gpu = Gpu::from_wgpu(h.device.clone(), h.queue.clone(), &h.info);
    let model =
        Model::synthetic(common::tiny_config(None), 5, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let before = s.forward(&[1, 2, 3]).unwrap();
    let greedy: Vec<u32> = s
        .generate_ids(&[4, 5], SamplerConfig::greedy(), 4)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    // wgpt's work (loading, prefill, decode steps) raised nothing in the host's handler.
    assert!(h.errors.lock().unwrap().is_empty(), "{:?}", h.errors);

    // The host's own mistake, after wrapping: the host's handler sees it...
    let _bad = invalid_buffer(&h.device);
    let errors = h.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("host's mistake"), "{errors:?}");
    // ...and wgpt does not report it as its own: the next calls succeed, with the same results.
    s.reset();
    assert_eq!(s.forward(&[1, 2, 3]).unwrap(), before);
    let again: Vec<u32> = s
        .generate_ids(&[4, 5], SamplerConfig::greedy(), 4)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    assert_eq!(again, greedy);

    // A mistake on another thread while wgpt works on this one goes to the host as well.
    let device = h.device.clone();
    let other = std::thread::spawn(move || {
        for _ in 0..20 {
            let _ = invalid_buffer(&device);
        }
    });
    for _ in 0..5 {
        s.reset();
        assert_eq!(s.forward(&[1, 2, 3]).unwrap(), before);
    }
    other.join().unwrap();
    assert_eq!(h.errors.lock().unwrap().len(), 21);
    assert!(h.lost.lock().unwrap().is_none());

    // The device-lost callback is still the host's; wgpt's calls then fail as device errors
    // (caught in its own scopes: nothing more reaches the host's handler).
    h.device.destroy();
    let _ = h.device.poll(wgpu::PollType::wait_indefinitely());
    assert_eq!(
        *h.lost.lock().unwrap(),
        Some(wgpu::DeviceLostReason::Destroyed)
    );
    let e = s.forward(&[1]).unwrap_err();
    assert!(e.is_device_error(), "{e}");
    assert_eq!(h.errors.lock().unwrap().len(), 21, "{:?}", h.errors);
}

#[test]
fn a_device_wgpt_opens_keeps_wgpts_handlers() {
    // With its own device (Gpu::new) wgpt reports a lost device with the reason.
    let Some(gpu) = test_gpu() else { return };
    let model =
        Model::synthetic(common::tiny_config(None), 5, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    s.forward(&[1]).unwrap();
    gpu.device().destroy();
    let e = s.forward(&[2]).unwrap_err();
    assert!(e.is_device_error(), "{e}");
    let text = common::chain(&e);
    assert!(text.starts_with("GPU error: "), "{text}");
}
