//! Adapter and device choice, and the small amount of GPU plumbing every part shares:
//! error capture (wgpu's default handler panics), buffer creation and read-back.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// How to pick an adapter. Empty options honour `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// `vulkan`, `metal`, `dx12` or `gl`; `None` means every backend (or `WGPU_BACKEND`).
    pub backend: Option<String>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Prefer a software adapter (lavapipe, WARP, SwiftShader).
    pub prefer_cpu: bool,
}

/// A summary of one adapter, for `wgpt info` and logs.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// A device and queue plus what wgpt needs to know about them.
///
/// ```no_run
/// let gpu = wgpt::Gpu::new(&wgpt::GpuOptions::default())?;
/// println!("running on {}", gpu.adapter());
/// # Ok::<(), wgpt::Error>(())
/// ```
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
    errors: Arc<Mutex<Option<String>>>,
    /// Set once the device is lost; unlike `errors` it is never cleared.
    lost: Arc<Mutex<Option<String>>>,
    /// Compiled pipelines by (program, shader options), shared by every model on this GPU.
    pipelines: Arc<Mutex<std::collections::HashMap<String, wgpu::ComputePipeline>>>,
}

fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::InvalidInput(format!(
            "unknown backend `{other}`; choose vulkan, metal, dx12 or gl"
        ))),
    }
}

fn no_adapter_message() -> String {
    let mut msg = String::from("no GPU adapter found");
    if cfg!(target_os = "linux") {
        msg.push_str(
            "; install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the lavapipe software adapter",
        );
    }
    msg
}

impl Gpu {
    /// Lists the adapters the options can see.
    pub fn adapters(opts: &GpuOptions) -> Result<Vec<AdapterSummary>> {
        Ok(enumerate(opts)?
            .iter()
            .map(|a| AdapterSummary::of(&a.get_info()))
            .collect())
    }

    /// Picks an adapter and opens a device with the adapter's own limits.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let adapters = enumerate(opts)?;
        let wanted = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|s| s.to_ascii_lowercase());
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
            return Err(Error::NoAdapter(match wanted {
                Some(w) => format!("no adapter matches `{w}` (see `wgpt info`)"),
                None => no_adapter_message(),
            }));
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
        let adapter = candidates.swap_remove(0);
        Self::open(&adapter)
    }

    fn open(adapter: &wgpu::Adapter) -> Result<Self> {
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
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", info.name)))?;
        log::info!(
            "adapter: {} ({:?}, {:?})",
            info.name,
            info.backend,
            info.device_type
        );
        Ok(Self::from_parts(device, queue, &info))
    }

    /// Wraps a device and queue that the embedding program already has.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Self {
        Self::from_parts(device, queue, info)
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Self {
        let errors = Arc::new(Mutex::new(None::<String>));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut slot) = lost_sink.lock() {
                let detail = if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                };
                slot.get_or_insert_with(|| format!("device lost ({reason:?}){detail}"));
            }
        });
        Gpu {
            limits: device.limits(),
            features: device.features(),
            subgroup_min_size: info.subgroup_min_size,
            software: info.device_type == wgpu::DeviceType::Cpu,
            device,
            queue,
            adapter: AdapterSummary::of(info),
            errors,
            lost,
            pipelines: Default::default(),
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
            return Err(Error::Gpu(msg));
        }
        let taken = self.errors.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(msg) => Err(Error::Gpu(msg)),
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
            return Err(Error::DeviceLimits(format!(
                "out of GPU memory allocating `{label}` ({size} bytes): {e}"
            )));
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
        Ok(buf)
    }

    /// A read-only `rgba32uint` texture of `width` × `height` texels (16 bytes each), filled
    /// with `data` (row-major, `width * 16` bytes per row). Weight matrices live in these.
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
        debug_assert_eq!(data.len(), width as usize * height as usize * 16);
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
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::DeviceLimits(format!(
                "out of GPU memory allocating `{label}` ({} bytes): {e}",
                data.len()
            )));
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
            return fail(Error::Gpu(format!("waiting for the GPU failed: {e}")));
        }
        if let Err(e) = self.check() {
            return fail(e);
        }
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("read-back failed: {e}"))),
            Err(_) => return fail(Error::Gpu("read-back was never completed".into())),
        }
        match slice.get_mapped_range() {
            Ok(view) => {
                out.clear();
                out.extend_from_slice(&view);
            }
            Err(e) => return fail(Error::Gpu(format!("read-back mapping failed: {e}"))),
        }
        staging.unmap();
        Ok(())
    }
}

/// Adapters of the requested backend; by default the primary backends (Vulkan, Metal, DX12),
/// falling back to GL only when they have none.
fn enumerate(opts: &GpuOptions) -> Result<Vec<wgpu::Adapter>> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let explicit = match &opts.backend {
        Some(b) => {
            desc.backends = parse_backend(b)?;
            true
        }
        None => std::env::var("WGPU_BACKEND").is_ok(),
    };
    if !explicit {
        desc.backends = wgpu::Backends::PRIMARY;
    }
    let backends = desc.backends;
    let adapters = pollster::block_on(wgpu::Instance::new(desc).enumerate_adapters(backends));
    if adapters.is_empty() && !explicit {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::GL;
        return Ok(pollster::block_on(
            wgpu::Instance::new(desc).enumerate_adapters(wgpu::Backends::GL),
        ));
    }
    Ok(adapters)
}

/// The adapter tests run on: `None` (test skipped with a note) when there is none, except
/// under `CI=true`, where a missing adapter fails the test. With `WGPU_BACKEND` set, an
/// adapter of another backend fails the test (a GL run must not quietly test Vulkan).
/// `tests/wgpu_adapter.rs` fails when there is no adapter at all, so skipped GPU tests never
/// pass silently.
#[doc(hidden)]
pub fn test_gpu() -> Option<Gpu> {
    let opts = GpuOptions {
        prefer_cpu: std::env::var("WGPT_TEST_GPU").is_err(),
        ..Default::default()
    };
    match Gpu::new(&opts) {
        Ok(g) => {
            if let Ok(want) = std::env::var("WGPU_BACKEND") {
                let got = &g.adapter().backend;
                assert!(
                    want.split(',').any(|w| got.eq_ignore_ascii_case(w.trim())),
                    "WGPU_BACKEND={want} but the test adapter is {}",
                    g.adapter()
                );
            }
            Some(g)
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true and no adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
