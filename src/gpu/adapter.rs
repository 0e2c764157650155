//! Which adapter to use: [`GpuOptions`], what an adapter is to wgpt ([`AdapterSummary`]), the
//! backends asked for, and the message when there is none.

#[cfg(test)]
use super::Gpu;

/// How to pick an adapter. Empty options honour `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
///
/// ```
/// let opts = wgpt::GpuOptions::default()
///     .with_backends(wgpt::wgpu::Backends::VULKAN)
///     .with_adapter("llvmpipe")
///     .with_prefer_cpu(true);
/// assert_eq!(opts.adapter.as_deref(), Some("llvmpipe"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GpuOptions {
    /// The backends to look at. `None`: `WGPU_BACKEND` when set, otherwise the primary
    /// backends (Vulkan, Metal, DX12) and GL only when they have no adapter.
    /// ([`Gpu::adapters`](crate::Gpu::adapters) lists every backend then.)
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive); `None`:
    /// `WGPU_ADAPTER_NAME` when set.
    pub adapter: Option<String>,
    /// Prefer a software adapter (lavapipe, WARP, SwiftShader).
    pub prefer_cpu: bool,
}

impl GpuOptions {
    /// Only these backends.
    pub fn with_backends(mut self, backends: wgpu::Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    /// The first adapter whose name contains `name` (case-insensitive).
    pub fn with_adapter(mut self, name: impl Into<String>) -> Self {
        self.adapter = Some(name.into());
        self
    }

    /// Prefer a software adapter.
    pub fn with_prefer_cpu(mut self, yes: bool) -> Self {
        self.prefer_cpu = yes;
        self
    }
}

/// A summary of one adapter, for `wgpt info` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterSummary {
    /// The adapter's name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The backend: `Vulkan`, `Metal`, `DX12` or `GL`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
}

/// The name wgpt prints for a backend.
pub(crate) fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DX12",
        wgpu::Backend::Gl => "GL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        wgpu::Backend::Noop => "noop",
    }
}

impl AdapterSummary {
    pub(super) fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: backend_name(info.backend).to_string(),
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

/// The backends `opts` asks for, and whether someone chose them (options or `WGPU_BACKEND`).
pub(super) fn requested_backends(opts: &GpuOptions) -> (wgpu::Backends, bool) {
    match opts.backends.or_else(wgpu::Backends::from_env) {
        Some(b) => (b, true),
        None => (wgpu::Backends::PRIMARY, false),
    }
}

/// Names of the backends in `b`, for messages.
fn backend_names(b: wgpu::Backends) -> String {
    let names: Vec<&str> = wgpu::Backend::ALL
        .into_iter()
        .filter(|x| b.contains((*x).into()) && *x != wgpu::Backend::Noop)
        .map(backend_name)
        .collect();
    names.join("/")
}

/// Why no adapter was found, with advice that fits the backends asked for and this platform.
pub(super) fn no_adapter_message(backends: wgpu::Backends, explicit: bool) -> String {
    let mut msg = if explicit {
        format!("no {} adapter found", backend_names(backends))
    } else {
        String::from("no GPU adapter found")
    };
    let mut advice: Vec<String> = Vec::new();
    let compiled = wgpu::Instance::enabled_backend_features();
    for (b, only) in [
        (wgpu::Backends::METAL, "Metal exists only on macOS and iOS"),
        (wgpu::Backends::DX12, "DX12 exists only on Windows"),
    ] {
        if explicit && backends.contains(b) && !compiled.contains(b) {
            advice.push(only.to_string());
        }
    }
    let wants_vulkan = !explicit || backends.contains(wgpu::Backends::VULKAN);
    if wants_vulkan && cfg!(target_os = "linux") {
        advice.push(
            "install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the lavapipe software adapter"
                .into(),
        );
    }
    if explicit && backends.contains(wgpu::Backends::GL) && cfg!(target_os = "linux") {
        advice.push(
            "install Mesa's EGL and OpenGL drivers, e.g. `apt-get install libegl1 libgl1-mesa-dri`"
                .into(),
        );
    }
    if !advice.is_empty() {
        msg.push_str("; ");
        msg.push_str(&advice.join("; "));
    }
    msg
}

/// The adapters of `backends` (WGPU_BACKEND does not override them here).
pub(super) fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    pollster::block_on(wgpu::Instance::new(desc).enumerate_adapters(backends))
}

/// The options tests pick their adapter with: a software adapter unless `WGPT_TEST_GPU` is
/// set (then the best one).
#[cfg(test)]
fn test_gpu_options() -> GpuOptions {
    GpuOptions::default().with_prefer_cpu(std::env::var("WGPT_TEST_GPU").is_err())
}

/// The adapter the unit tests run on (the integration tests have their own, in
/// `tests/common`, through the public API): `None` (test skipped with a note) when there is none, except
/// under `CI=true`, where a missing adapter fails the test. With `WGPU_BACKEND` set, an
/// adapter of another backend fails the test (a GL run must not quietly test Vulkan).
/// `tests/wgpu_adapter.rs` fails when there is no adapter at all, so skipped GPU tests never
/// pass silently.
#[cfg(test)]
pub(crate) fn test_gpu() -> Option<Gpu> {
    match Gpu::new(&test_gpu_options()) {
        Ok(g) => {
            if let Ok(want) = std::env::var("WGPU_BACKEND") {
                let got = &g.adapter().backend;
                let wanted = wgpu::Backends::from_comma_list(&want);
                assert!(
                    wgpu::Backend::ALL
                        .into_iter()
                        .any(|b| wanted.contains(b.into()) && backend_name(b) == got),
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
