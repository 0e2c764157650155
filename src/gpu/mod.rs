//! Adapter and device choice, and the small amount of GPU plumbing every part shares:
//! error capture, buffer creation and read-back.
//!
//! wgpt's GPU work runs inside wgpu error scopes (`Gpu::scoped`): its errors come back as
//! [`Error`]s from the call that caused them, and a device that the host program shares
//! ([`Gpu::from_wgpu`]) keeps the host's own uncaptured-error handler and device-lost
//! callback. wgpu's error scopes are per thread, so the host's errors on any thread, and on
//! this thread between wgpt's calls, reach the host's handler, never wgpt.
//!
//! Layer: above `error`, `util`, `format`; may import nothing else of wgpt.

mod adapter;
mod progress;

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
#[cfg(test)]
pub(crate) use adapter::test_gpu;
use adapter::{enumerate, no_adapter_message, requested_backends};
pub use adapter::{AdapterSummary, GpuOptions};
use progress::uploaded;
pub(crate) use progress::with_upload_progress;
pub use progress::Progress;

/// ```no_run
/// let gpu = wgpt::Gpu::new(&wgpt::GpuOptions::default())?;
/// println!("running on {}", gpu.adapter());
/// # Ok::<(), wgpt::Error>(())
/// ```
/// A device and queue plus what wgpt needs to know about them.
///
#[derive(Clone)]
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    features: wgpu::Features,
    /// Smallest subgroup the adapter may run.
    subgroup_min_size: u32,
    /// The adapter is a CPU (lavapipe, WARP, SwiftShader).
    software: bool,
    /// Errors outside wgpt's scopes on a device wgpt opened (none expected; wgpu's default
    /// handler would panic). Never set for a device from [`Gpu::from_wgpu`].
    errors: Arc<Mutex<Option<String>>>,
    /// Set once a device wgpt opened is lost; unlike `errors` it is never cleared.
    lost: Arc<Mutex<Option<String>>>,
    /// Compiled pipelines by (program, shader options), shared by every model on this GPU.
    pipelines: Arc<Mutex<std::collections::HashMap<String, wgpu::ComputePipeline>>>,
}

impl Gpu {
    /// Lists the adapters of the backends the options ask for; with none asked for (and no
    /// `WGPU_BACKEND`), of every backend.
    pub fn adapters(opts: &GpuOptions) -> Result<Vec<AdapterSummary>> {
        let backends = opts
            .backends
            .or_else(wgpu::Backends::from_env)
            .unwrap_or(wgpu::Backends::all());
        Ok(enumerate(backends)
            .iter()
            .map(|a| AdapterSummary::of(&a.get_info()))
            .collect())
    }

    /// The adapter [`Gpu::new`] would open: of the requested backends (by default the primary
    /// ones, then GL), the first whose name matches, discrete GPUs first (software adapters
    /// first with `prefer_cpu`), Vulkan/Metal/DX12 before GL. A host that wants its own device
    /// can open it from this adapter and wrap it with [`Gpu::from_wgpu`].
    pub fn choose_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
        let (backends, explicit) = requested_backends(opts);
        let mut adapters = enumerate(backends);
        if adapters.is_empty() && !explicit {
            adapters = enumerate(wgpu::Backends::GL);
        }
        let wanted = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|s| s.to_ascii_lowercase());
        if adapters.is_empty() {
            return Err(Error::NoAdapter(no_adapter_message(backends, explicit)));
        }
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let mut candidates: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                wanted
                    .as_ref()
                    .is_none_or(|w| info.name.to_ascii_lowercase().contains(w))
            })
            .collect();
        if candidates.is_empty() {
            let w = wanted.unwrap_or_default();
            return Err(Error::NoAdapter(format!(
                "no adapter matches `{w}`; found: {}",
                names.join(", ")
            )));
        }
        let rank = |a: &wgpu::Adapter| {
            let info = a.get_info();
            let ty = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Cpu => 3,
                wgpu::DeviceType::Other => 4,
            };
            let ty = if opts.prefer_cpu && ty == 3 { -1 } else { ty };
            // Prefer Vulkan/Metal/DX12 over GL for the same device.
            let be = i32::from(info.backend == wgpu::Backend::Gl);
            (ty, be)
        };
        candidates.sort_by_key(rank);
        Ok(candidates.swap_remove(0))
    }

    /// Picks an adapter ([`Gpu::choose_adapter`]) and opens a device with the adapter's own
    /// limits. wgpt owns this device: it installs its own uncaptured-error handler and
    /// device-lost callback.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let adapter = Self::choose_adapter(opts)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SHADER_F16
                | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgpt"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::gpu(format!("cannot open {}", info.name), e))?;
        log::info!(
            "adapter: {} ({:?}, {:?})",
            info.name,
            info.backend,
            info.device_type
        );
        let gpu = Self::from_parts(device, queue, &info);
        let sink = gpu.errors.clone();
        gpu.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("wgpu: {e}");
                if let Ok(mut slot) = sink.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }));
        let lost_sink = gpu.lost.clone();
        gpu.device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut slot) = lost_sink.lock() {
                let detail = if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                };
                slot.get_or_insert_with(|| format!("device lost ({reason:?}){detail}"));
            }
        });
        Ok(gpu)
    }

    /// Wraps a device and queue that the embedding program already has. wgpt leaves the
    /// device's uncaptured-error handler and device-lost callback to the program: it catches
    /// its own errors in error scopes around its work (per thread, see the module docs), so the
    /// program's handler still sees the program's own errors and never wgpt's, and wgpt never
    /// reports an error of the program as its own. After the device is lost, wgpt's calls fail
    /// with a GPU error.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Self {
        Self::from_parts(device, queue, info)
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Self {
        Gpu {
            limits: device.limits(),
            features: device.features(),
            subgroup_min_size: info.subgroup_min_size,
            software: info.device_type == wgpu::DeviceType::Cpu,
            device,
            queue,
            adapter: AdapterSummary::of(info),
            errors: Default::default(),
            lost: Default::default(),
            pipelines: Default::default(),
        }
    }

    /// Runs `f` inside error scopes (validation, out of memory, internal) on this thread and
    /// turns what they catch into an [`Error`] (it takes precedence over `f`'s own error,
    /// which is then usually a consequence). Every public entry point that touches the GPU
    /// runs in one; nested calls are fine.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        // Popped in reverse order of pushing, as wgpu requires.
        let validation = pollster::block_on(validation.pop());
        let internal = pollster::block_on(internal.pop());
        let oom = pollster::block_on(oom.pop());
        let lost = self.lost.lock().ok().and_then(|s| s.clone());
        match (lost, oom, validation.or(internal)) {
            // A device wgpt opened knows why it was lost: that is the error to report.
            (Some(msg), Some(e), _) | (Some(msg), None, Some(e)) => Err(Error::gpu(msg, e)),
            (_, Some(e), _) => Err(Error::OutOfMemory {
                message: "while running wgpt's work".into(),
                source: Some(Box::new(e)),
            }),
            (_, None, Some(e)) => Err(Error::gpu("wgpu reported an error", e)),
            (_, None, None) => out,
        }
    }

    /// The pipeline cached under `key`, compiled by `make` the first time it is asked for.
    pub(crate) fn pipeline(
        &self,
        key: &str,
        make: impl FnOnce() -> wgpu::ComputePipeline,
    ) -> wgpu::ComputePipeline {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        cache.entry(key.to_string()).or_insert_with(make).clone()
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The device's limits (the adapter's own, as requested).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// The smallest subgroup size the adapter may use.
    pub fn subgroup_min_size(&self) -> u32 {
        self.subgroup_min_size
    }

    /// Whether the adapter is a software one running on the CPU (lavapipe, WARP, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Fails with the first GPU error reported since the last check, if any.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(msg) = self.lost.lock().ok().and_then(|s| s.clone()) {
            return Err(Error::gpu_msg(msg));
        }
        let taken = self.errors.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(msg) => Err(Error::gpu_msg(msg)),
            None => Ok(()),
        }
    }

    /// Creates a buffer, turning an allocation failure into an error instead of a panic.
    pub(crate) fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        if size > self.limits.max_buffer_size {
            return Err(Error::DeviceLimits(format!(
                "buffer `{label}` needs {size} bytes; the adapter's max_buffer_size is {}",
                self.limits.max_buffer_size
            )));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).next_multiple_of(4),
            usage,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory {
                message: format!("allocating `{label}` ({size} bytes)"),
                source: Some(Box::new(e)),
            });
        }
        Ok(buf)
    }

    /// A storage buffer filled with `data`.
    pub(crate) fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let buf = self.buffer(
            label,
            data.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, data);
        }
        uploaded(data.len() as u64);
        Ok(buf)
    }

    /// A read-only `rgba32uint` texture of `width` × `height` texels (16 bytes each), filled
    /// with `data` (row-major, `width * 16` bytes per row). Weight matrices live in these; the
    /// kernels bind them as sampled textures (cooperative family) or read-only storage textures
    /// (barrier-free family), see `shaders/texel_*.wgsl`.
    pub(crate) fn texture_init(
        &self,
        label: &str,
        width: u32,
        height: u32,
        data: &[u8],
    ) -> Result<wgpu::Texture> {
        let max = self.limits.max_texture_dimension_2d;
        if width > max || height > max {
            return Err(Error::DeviceLimits(format!(
                "`{label}` needs a {width}×{height} texture; the adapter's max_texture_dimension_2d is {max}"
            )));
        }
        // A plain assert (once per weight matrix): tests run in the release profile.
        assert_eq!(data.len(), width as usize * height as usize * 16);
        let size = wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        };
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let tex = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Uint,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory {
                message: format!("allocating `{label}` ({} bytes)", data.len()),
                source: Some(Box::new(e)),
            });
        }
        self.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &tex,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            data,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width * 16),
                rows_per_image: Some(height),
            },
            size,
        );
        uploaded(data.len() as u64);
        Ok(tex)
    }

    /// A small uniform buffer holding `value`. (Not `create_buffer_init`: its mapping panics
    /// on a lost device, and a lost device must be an error.)
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(value);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.len() as u64).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytes);
        buf
    }

    /// Submits `encoder`, waits, and copies `len` bytes out of the mappable `staging` buffer.
    #[cfg(test)]
    pub(crate) fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.queue.submit([encoder.finish()]);
        self.read_back(staging, len, out, None)
    }

    /// Waits for the submitted work (up to `submission` when given, so later submissions may
    /// still run) and copies the first `len` bytes of `staging` into `out`.
    pub(crate) fn read_back(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
        out: &mut Vec<u8>,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<()> {
        let slice = staging.slice(..len);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        // On failure the buffer is unmapped (or its pending mapping dropped), so that later
        // steps can still copy into it; a mapping that failed left it unmapped already.
        let fail = |e: Error| {
            staging.unmap();
            Err(e)
        };
        let waited = self.device.poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout: None,
        });
        if let Err(e) = waited {
            return fail(Error::gpu("waiting for the GPU failed", e));
        }
        if let Err(e) = self.check() {
            return fail(e);
        }
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::gpu("read-back failed", e)),
            Err(_) => return fail(Error::gpu_msg("read-back was never completed")),
        }
        match slice.get_mapped_range() {
            Ok(view) => {
                out.clear();
                out.extend_from_slice(&view);
            }
            Err(e) => return fail(Error::gpu("read-back mapping failed", e)),
        }
        staging.unmap();
        Ok(())
    }
}
