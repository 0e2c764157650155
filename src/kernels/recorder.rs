//! [`Recorder`]: where dispatches are recorded. Normally one compute pass per submit; when
//! profiling, one pass per dispatch with GPU timestamps before and after it.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A session's or an engine's profiling: the timestamp queries once enabled, and the times of
/// the dispatches read back since the last [`Profiling::take`].
#[derive(Default)]
pub(crate) struct Profiling {
    profiler: Option<Profiler>,
    times: Vec<(String, f64)>,
}

impl Profiling {
    /// Times every dispatch from now on; false when the adapter has no timestamp queries.
    pub fn enable(&mut self, gpu: &Gpu) -> Result<bool> {
        if self.profiler.is_none() {
            self.profiler = gpu.scoped(|| Profiler::new(gpu, 2048))?;
        }
        Ok(self.profiler.is_some())
    }

    pub fn is_on(&self) -> bool {
        self.profiler.is_some()
    }

    /// What a submit's [`Recorder`] times its dispatches with.
    pub fn profiler(&mut self) -> Option<&mut Profiler> {
        self.profiler.as_mut()
    }

    /// Copies the submit's timestamps to the mappable buffer (before `finish`).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        if let Some(p) = &self.profiler {
            p.resolve(enc);
        }
    }

    /// After the submit completed: keeps its dispatches' times.
    pub fn collect(&mut self, gpu: &Gpu) -> Result<()> {
        if let Some(p) = &mut self.profiler {
            self.times.extend(p.read(gpu)?);
        }
        Ok(())
    }

    /// (label, GPU nanoseconds) of every dispatch collected since the last call.
    pub fn take(&mut self) -> Vec<(String, f64)> {
        std::mem::take(&mut self.times)
    }
}

/// GPU timestamps for up to `capacity` dispatches of one submit.
pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    capacity: u32,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// (kernel, layer) of each dispatch recorded since the last read.
    names: Vec<(&'static str, &'static str)>,
    period_ns: f64,
}

impl Profiler {
    /// `None` when the adapter has no timestamp queries.
    pub fn new(gpu: &Gpu, capacity: u32) -> Result<Option<Self>> {
        if !gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Ok(None);
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity * 2,
        });
        let bytes = capacity as u64 * 16;
        let resolve = gpu.buffer(
            "profile.resolve",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let staging = gpu.buffer(
            "profile.staging",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(Some(Profiler {
            queries,
            capacity,
            resolve,
            staging,
            names: Vec::new(),
            period_ns: gpu.queue.get_timestamp_period() as f64,
        }))
    }

    /// Copies this submit's timestamps to the mappable buffer (call before `finish`).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = self.names.len() as u32 * 2;
        if n > 0 {
            enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, n as u64 * 8);
        }
    }

    /// After the submit completed: (label, nanoseconds) per dispatch, then clears. The label
    /// is the kernel name, followed by the layer's name where the dispatch has one
    /// (`matvec c_attn`).
    pub fn read(&mut self, gpu: &Gpu) -> Result<Vec<(String, f64)>> {
        let n = self.names.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let slice = self.staging.slice(..n as u64 * 16);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::gpu("waiting for the timestamp queries failed", e))?;
        let times: Vec<u64> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::gpu("reading the timestamp queries failed", e))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.staging.unmap();
        let out = self
            .names
            .drain(..)
            .enumerate()
            .map(|(i, (kernel, layer))| {
                let label = if layer.is_empty() {
                    kernel.to_string()
                } else {
                    format!("{kernel} {layer}")
                };
                (
                    label,
                    times[2 * i + 1].saturating_sub(times[2 * i]) as f64 * self.period_ns,
                )
            })
            .collect();
        Ok(out)
    }
}

/// Records dispatches into a command encoder.
pub(crate) struct Recorder<'a> {
    enc: &'a mut wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    profiler: Option<&'a mut Profiler>,
}

impl<'a> Recorder<'a> {
    pub fn new(enc: &'a mut wgpu::CommandEncoder, profiler: Option<&'a mut Profiler>) -> Self {
        Recorder {
            enc,
            pass: None,
            profiler,
        }
    }

    /// Records one dispatch; `name` is (kernel, layer or "") for the profile.
    pub fn dispatch(
        &mut self,
        name: (&'static str, &'static str),
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        xyz: (u32, u32, u32),
    ) {
        let (x, y, z) = xyz;
        if x == 0 || y == 0 || z == 0 {
            return;
        }
        if let Some(p) = self.profiler.as_deref_mut() {
            let i = p.names.len() as u32;
            if i < p.capacity {
                let mut pass = self.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(name.0),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &p.queries,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    }),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(x, y, z);
                p.names.push(name);
                return;
            }
        }
        let enc = &mut *self.enc;
        let pass = self.pass.get_or_insert_with(|| {
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            })
            .forget_lifetime()
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}
