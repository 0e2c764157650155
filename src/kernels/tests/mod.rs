//! Every kernel against `crate::reference` on odd shapes.
//! Tolerance: |gpu − ref| ≤ 1e-4 + 1e-4·|ref| (f32 accumulation over up to 772 terms).
//! Matmul K is a multiple of 4 (the kernels load X as vec4); rows and columns are odd.

use super::*;
use crate::gpu::{test_gpu, Gpu};
use crate::kernels::Step;
use crate::reference;
use crate::util::Rng;

mod attention;
mod elementwise;
mod matmul;
mod norm;
mod quant;

pub(super) struct Harness {
    pub(super) gpu: Gpu,
    pub(super) k: Kernels,
    pub(super) step: wgpu::Buffer,
    pub(super) opts: ShaderOptions,
}

impl Harness {
    pub(super) fn new() -> Option<Self> {
        let gpu = test_gpu()?;
        let opts = ShaderOptions::best(&gpu);
        Some(Self::on(gpu, opts))
    }

    /// One harness per shader variant set on this adapter: both kernel families, and the
    /// barrier-free one also with the optional features the device has.
    pub(super) fn variants() -> Vec<Self> {
        Self::variants_kv(KvDtype::F32)
    }

    /// [`Harness::variants`] with a KV cache of `kv`.
    pub(super) fn variants_kv(kv: KvDtype) -> Vec<Self> {
        let Some(gpu) = test_gpu() else {
            return Vec::new();
        };
        let best = ShaderOptions::best(&gpu);
        let mut opts = vec![
            ShaderOptions::PORTABLE,
            ShaderOptions {
                family: KernelFamily::Cooperative,
                ..ShaderOptions::PORTABLE
            },
        ];
        if best.subgroups {
            opts.push(ShaderOptions {
                family: KernelFamily::BarrierFree,
                subgroups: true,
            });
        }
        opts.into_iter()
            .map(|o| Self::on_kv(gpu.clone(), o, kv))
            .collect()
    }

    pub(super) fn on(gpu: Gpu, opts: ShaderOptions) -> Self {
        Self::on_kv(gpu, opts, KvDtype::F32)
    }

    fn on_kv(gpu: Gpu, opts: ShaderOptions, kv: KvDtype) -> Self {
        let k = Kernels::with_options(&gpu, opts, kv);
        let step = crate::kernels::step_uniform(&gpu);
        Harness { gpu, k, step, opts }
    }

    pub(super) fn buf(&self, data: &[f32]) -> wgpu::Buffer {
        self.buf_bytes(bytemuck::cast_slice(data))
    }

    pub(super) fn buf_bytes(&self, data: &[u8]) -> wgpu::Buffer {
        let b = self
            .gpu
            .buffer(
                "test",
                data.len() as u64 + X_WINDOW,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            )
            .unwrap();
        self.gpu.queue.write_buffer(&b, 0, data);
        b
    }

    pub(super) fn run_mm(
        &self,
        d: &MatmulDispatch,
        step: Step,
        out: &wgpu::Buffer,
        len: usize,
    ) -> Vec<f32> {
        self.run_with(
            |pass| d.encode(pass, step.n_tokens, step.n_rows),
            step,
            out,
            len,
        )
    }

    pub(super) fn run(
        &self,
        ds: &[&Dispatch],
        step: Step,
        out: &wgpu::Buffer,
        len: usize,
    ) -> Vec<f32> {
        self.run_with(
            |pass| {
                for d in ds {
                    d.encode(pass, step.n_tokens, step.n_rows);
                }
            },
            step,
            out,
            len,
        )
    }

    pub(super) fn run_with(
        &self,
        f: impl FnOnce(&mut Recorder<'_>),
        step: Step,
        out: &wgpu::Buffer,
        len: usize,
    ) -> Vec<f32> {
        self.gpu
            .queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
        let staging = self
            .gpu
            .buffer(
                "staging",
                (len * 4) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
            .unwrap();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut rec = Recorder::new(&mut enc, None);
            f(&mut rec);
        }
        enc.copy_buffer_to_buffer(out, 0, &staging, 0, (len * 4) as u64);
        let mut bytes = Vec::new();
        self.gpu
            .submit_and_read(enc, &staging, (len * 4) as u64, &mut bytes)
            .unwrap();
        bytemuck::cast_slice(&bytes).to_vec()
    }
}

pub(super) fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
        .collect()
}

pub(super) fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 + 1e-4 * w.abs();
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: gpu {g} vs reference {w}"
        );
    }
}

/// W given as (n, k) rows → the shaders' (K, N) weight texture in `dtype`, and the values the
/// GPU will actually see (rounded to f16 when stored as f16).
pub(super) fn pack(
    gpu: &Gpu,
    w: &[f32],
    n: usize,
    k: usize,
    dtype: WeightDtype,
) -> (WeightMatrix, Vec<f32>) {
    let round = |v: f32| match dtype {
        WeightDtype::F16 => half::f16::from_f32(v).to_f32(),
        _ => v,
    };
    let seen: Vec<f32> = w.iter().map(|&v| round(v)).collect();
    let at = |kk: usize, nn: usize| seen[nn * k + kk];
    let m = WeightMatrix::from_parts(gpu, "test", k, &[(n, dtype, Columns::Values(&at))]).unwrap();
    (m, seen)
}
