//! Every kernel against `crate::reference` on odd shapes.
//! Tolerance: |gpu − ref| ≤ 1e-4 + 1e-4·|ref| (f32 accumulation over up to 772 terms).
//! Matmul K is a multiple of 4 (the kernels load X as vec4); rows and columns are odd.

use super::*;
use crate::gpu::{test_gpu, Gpu};
use crate::model::forward::Step;
use crate::reference;
use crate::util::Rng;

mod quant;

pub(super) struct Harness {
    gpu: Gpu,
    k: Kernels,
    step: wgpu::Buffer,
    opts: ShaderOptions,
}

impl Harness {
    fn new() -> Option<Self> {
        let gpu = test_gpu()?;
        let opts = ShaderOptions::best(&gpu);
        Some(Self::on(gpu, opts))
    }

    /// One harness per shader variant set on this adapter: both kernel families, and the
    /// barrier-free one also with the optional features the device has.
    pub(super) fn variants() -> Vec<Self> {
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
        opts.into_iter().map(|o| Self::on(gpu.clone(), o)).collect()
    }

    fn on(gpu: Gpu, opts: ShaderOptions) -> Self {
        let k = Kernels::with_options(&gpu, opts, crate::kernels::KvDtype::F32);
        let step = crate::model::forward::step_uniform(&gpu);
        Harness { gpu, k, step, opts }
    }

    pub(super) fn buf(&self, data: &[f32]) -> wgpu::Buffer {
        self.buf_bytes(bytemuck::cast_slice(data))
    }

    fn buf_bytes(&self, data: &[u8]) -> wgpu::Buffer {
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

    fn run(&self, ds: &[&Dispatch], step: Step, out: &wgpu::Buffer, len: usize) -> Vec<f32> {
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

    fn run_with(
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

fn assert_close(got: &[f32], want: &[f32], what: &str) {
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
fn pack(gpu: &Gpu, w: &[f32], n: usize, k: usize, dtype: WeightDtype) -> (WeightMatrix, Vec<f32>) {
    let round = |v: f32| match dtype {
        WeightDtype::F16 => half::f16::from_f32(v).to_f32(),
        _ => v,
    };
    let seen: Vec<f32> = w.iter().map(|&v| round(v)).collect();
    let at = |kk: usize, nn: usize| seen[nn * k + kk];
    let m = WeightMatrix::from_parts(gpu, "test", k, &[(n, dtype, Columns::Values(&at))]).unwrap();
    (m, seen)
}

#[test]
fn matmul_matches_reference() {
    for h in Harness::variants() {
        matmul_matches_reference_on(&h);
    }
}

fn matmul_matches_reference_on(h: &Harness) {
    let mut rng = Rng::new(1);
    // Rows > 1 with 8·K·4 bytes aligned and K ≤ 2048 use the uniform-window kernel
    // (matmul_block.wgsl); other batches matmul.wgsl; one row matvec.wgsl (K = 2056: three
    // steps of matvec_wide, the last one partial).
    let shapes = [
        (1, 4, 1),
        (7, 64, 7),
        (5, 772, 33),
        (65, 8, 1),
        (1, 768, 65),
        (9, 96, 260),
        (1, 8, 300),
        (1, 772, 129),
        (2, 4, 9),
        (17, 260, 769),
        (3, 3072, 20),
        (20, 2048, 16),
        (1, 2056, 17),
    ];
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        for (i, &(rows, k, n)) in shapes.iter().enumerate() {
            let act = (i % 4) as u32;
            let accumulate = i % 2 == 1;
            let x = random(&mut rng, rows * k, 1.0);
            let w = random(&mut rng, n * k, 0.5);
            let b = random(&mut rng, n, 0.5);
            let y0 = random(&mut rng, rows * n, 1.0);
            let (wbuf, wseen) = pack(&h.gpu, &w, n, k, dtype);
            let (xb, bb, yb) = (h.buf(&x), h.buf(&b), h.buf(&y0));
            let spec = MatmulSpec {
                k,
                n,
                ld_y: n,
                y_col0: 0,
                act,
                accumulate,
                lm_rows: false,
                max_rows: rows,
                layer: "test",
            };
            let d = matmul(&h.gpu, &h.k, &h.step, spec, &xb, &wbuf, &bb, &yb, None);
            let align = h.gpu.limits().min_uniform_buffer_offset_alignment as usize;
            let blocked = h.opts.family == KernelFamily::BarrierFree
                && rows > 1
                && k <= 2048
                && (32 * k) % align == 0;
            assert_eq!(
                d.block_count() > 0,
                blocked,
                "rows={rows} k={k}: uniform-window kernel choice"
            );
            let got = h.run_mm(
                &d,
                Step {
                    n_tokens: rows as u32,
                    pos: 0,
                    row0: 0,
                    n_rows: 0,
                },
                &yb,
                rows * n,
            );
            let mut want = reference::linear(&x, &wseen, &b, k, n);
            for (j, v) in want.iter_mut().enumerate() {
                *v = match act {
                    1 => reference::gelu_tanh(*v),
                    2 => reference::gelu_erf(*v),
                    3 => v.max(0.0),
                    _ => *v,
                };
                if accumulate {
                    *v += y0[j];
                }
            }
            assert_close(
                &got,
                &want,
                &format!(
                    "matmul {dtype} rows={rows} k={k} n={n} act={act} acc={accumulate} {:?}",
                    h.opts
                ),
            );
        }
    }
}

#[test]
fn matmul_lm_head_window_writes_column_slice() {
    for h in Harness::variants() {
        matmul_lm_head_window_writes_column_slice_on(&h);
    }
}

fn matmul_lm_head_window_writes_column_slice_on(h: &Harness) {
    let mut rng = Rng::new(2);
    let (rows, k, n, ld, col0) = (9, 12, 11, 30, 17);
    let x = random(&mut rng, rows * k, 1.0);
    let w = random(&mut rng, n * k, 1.0);
    let zeros = vec![0f32; n];
    let (wbuf, wseen) = pack(&h.gpu, &w, n, k, WeightDtype::F32);
    let (xb, bb) = (h.buf(&x), h.buf(&zeros));
    let yb = h.buf(&vec![0f32; 3 * ld]);
    let spec = MatmulSpec {
        k,
        n,
        ld_y: ld,
        y_col0: col0,
        act: 0,
        accumulate: false,
        lm_rows: true,
        max_rows: 0,
        layer: "test",
    };
    let d = matmul(&h.gpu, &h.k, &h.step, spec, &xb, &wbuf, &bb, &yb, None);
    // Rows 5..8 of x into rows 0..3 of y, columns 17..28.
    let got = h.run_mm(
        &d,
        Step {
            n_tokens: rows as u32,
            pos: 0,
            row0: 5,
            n_rows: 3,
        },
        &yb,
        3 * ld,
    );
    let full = reference::linear(&x, &wseen, &zeros, k, n);
    for r in 0..3 {
        for c in 0..ld {
            let want = if (col0..col0 + n).contains(&c) {
                full[(5 + r) * n + c - col0]
            } else {
                0.0
            };
            let g = got[r * ld + c];
            assert!(
                (g - want).abs() <= 1e-4 + 1e-4 * want.abs(),
                "row {r} col {c}: {g} vs {want}"
            );
        }
    }
    // One row (the matrix-vector kernel): row 7 of x into row 0 of y.
    let got = h.run_mm(
        &d,
        Step {
            n_tokens: rows as u32,
            pos: 0,
            row0: 7,
            n_rows: 1,
        },
        &yb,
        ld,
    );
    for c in col0..col0 + n {
        let want = full[7 * n + c - col0];
        let g = got[c];
        assert!(
            (g - want).abs() <= 1e-4 + 1e-4 * want.abs(),
            "one row, col {c}: {g} vs {want}"
        );
    }
}

/// The norm `x = norm(src)·gamma + beta` a one-row kernel may apply itself (eps 1e-5; beta
/// zeros for RMSNorm).
fn fused_norm<'a>(
    src: &'a wgpu::Buffer,
    gamma: &'a wgpu::Buffer,
    beta: &'a wgpu::Buffer,
    rms: bool,
) -> FusedNorm<'a> {
    FusedNorm {
        src,
        gamma,
        beta,
        eps: 1e-5,
        rms,
    }
}

#[test]
fn matvec_applies_fused_layer_norm() {
    // x = LN(src) (or RMSNorm(src)) is bound too: the barrier-free family reads it, the
    // cooperative one-row kernel normalizes src itself; both must give linear(norm(src)).
    for h in Harness::variants() {
        let mut rng = Rng::new(6);
        let shapes = [
            (12, 11, false),
            (772, 33, false),
            (3072, 20, false),
            (20, 9, true),
            (576, 17, true),
        ];
        for (i, &(k, n, rms)) in shapes.iter().enumerate() {
            let rows = 3;
            let src: Vec<f32> = random(&mut rng, rows * k, 2.0)
                .iter()
                .map(|v| v + 0.7)
                .collect();
            let (g, mut be) = (random(&mut rng, k, 1.0), random(&mut rng, k, 1.0));
            let x = if rms {
                be = vec![0.0; k]; // RMSNorm binds zeros as its beta
                reference::rms_norm(&src, &g, k, 1e-5)
            } else {
                reference::layer_norm(&src, &g, &be, k, 1e-5)
            };
            let w = random(&mut rng, n * k, 0.5);
            let b = random(&mut rng, n, 0.5);
            let dtype = [WeightDtype::F32, WeightDtype::F16][i % 2];
            let (wbuf, wseen) = pack(&h.gpu, &w, n, k, dtype);
            let (srcb, gb, beb) = (h.buf(&src), h.buf(&g), h.buf(&be));
            let (xb, bb, yb) = (h.buf(&x), h.buf(&b), h.buf(&vec![0f32; n]));
            let norm = fused_norm(&srcb, &gb, &beb, rms);
            let full = reference::linear(&x, &wseen, &b, k, n);
            for (lm_rows, row) in [(false, 0), (true, 2)] {
                let spec = MatmulSpec {
                    k,
                    n,
                    ld_y: n,
                    y_col0: 0,
                    act: 0,
                    accumulate: false,
                    lm_rows,
                    max_rows: rows,
                    layer: "test",
                };
                let d = matmul(
                    &h.gpu,
                    &h.k,
                    &h.step,
                    spec,
                    &xb,
                    &wbuf,
                    &bb,
                    &yb,
                    Some(norm),
                );
                let step = Step {
                    n_tokens: if lm_rows { rows as u32 } else { 1 },
                    pos: 0,
                    row0: row as u32,
                    n_rows: 1,
                };
                let got = h.run_mm(&d, step, &yb, n);
                assert_close(
                    &got,
                    &full[row * n..(row + 1) * n],
                    &format!(
                        "fused norm matvec {dtype} k={k} n={n} rms={rms} row={row} {:?}",
                        h.opts
                    ),
                );
            }
        }
    }
}

/// Where the barrier-free family fuses the norm (with subgroups), the one-row kernel gives the
/// same bits as the layer_norm kernel followed by the unfused kernel: both sum the statistics
/// in the same order (fused_norm.wgsl, layer_norm.wgsl), so a sequence decodes to the same ids
/// alone (fused) or in a batch of sequences (the norm dispatched, then the 8×8 tile, which sums
/// like the one-row kernel).
#[test]
fn fused_norm_gives_the_layer_norm_kernels_bits() {
    let fusing = Harness::variants()
        .into_iter()
        .filter(|h| h.k.family == KernelFamily::BarrierFree && h.k.fuses_decode_norm());
    for h in fusing {
        let mut rng = Rng::new(16);
        // K = 100: 25 vec4, not a whole number of lane groups.
        for (k, n, rms) in [
            (768, 40, false),
            (100, 24, false),
            (576, 17, true),
            (3072, 9, false),
        ] {
            // Values over several octaves, so that the order of the sums shows in their bits.
            let src: Vec<f32> = random(&mut rng, k, 3.0)
                .iter()
                .enumerate()
                .map(|(i, v)| (v + 1.5) * (1 << (i % 7)) as f32)
                .collect();
            let g = random(&mut rng, k, 1.0);
            let be = if rms {
                vec![0.0; k]
            } else {
                random(&mut rng, k, 1.0)
            };
            let (w, b) = (random(&mut rng, n * k, 0.5), random(&mut rng, n, 0.5));
            let (wbuf, _) = pack(&h.gpu, &w, n, k, WeightDtype::F16);
            let (srcb, gb, beb, bb) = (h.buf(&src), h.buf(&g), h.buf(&be), h.buf(&b));
            let (yb, zeros, ob) = (
                h.buf(&vec![0f32; k]),
                h.buf(&vec![0f32; k]),
                h.buf(&vec![0f32; n]),
            );
            let step = Step {
                n_tokens: 1,
                pos: 0,
                row0: 0,
                n_rows: 1,
            };
            let ln = layer_norm(
                &h.gpu, &h.k, &h.step, k, 1e-5, rms, &srcb, &gb, &beb, &yb, false,
            );
            h.run(&[&ln], step, &yb, k);
            let spec = MatmulSpec {
                k,
                n,
                ld_y: n,
                y_col0: 0,
                act: 0,
                accumulate: false,
                lm_rows: false,
                max_rows: 1,
                layer: "test",
            };
            let (gpu, kk, st) = (&h.gpu, &h.k, &h.step);
            let unfused = matmul(gpu, kk, st, spec, &yb, &wbuf, &bb, &ob, None);
            let want = h.run_mm(&unfused, step, &ob, n);
            let norm = fused_norm(&srcb, &gb, &beb, rms);
            let fused = matmul(gpu, kk, st, spec, &zeros, &wbuf, &bb, &ob, Some(norm));
            let got = h.run_mm(&fused, step, &ob, n);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&want),
                "k={k} n={n} rms={rms} {:?}",
                h.opts
            );
        }
    }
}

#[test]
fn layer_norm_matches_reference() {
    for h in Harness::variants() {
        layer_norm_matches_reference_on(&h);
    }
}

fn layer_norm_matches_reference_on(h: &Harness) {
    let mut rng = Rng::new(3);
    for (rows, c) in [(1, 4), (7, 8), (65, 68), (3, 772)] {
        let x: Vec<f32> = random(&mut rng, rows * c, 3.0)
            .iter()
            .map(|v| v + 1.5)
            .collect();
        let g = random(&mut rng, c, 1.0);
        let b = random(&mut rng, c, 1.0);
        let (xb, gb, bb, yb) = (
            h.buf(&x),
            h.buf(&g),
            h.buf(&b),
            h.buf(&vec![0f32; rows * c]),
        );
        let step = Step {
            n_tokens: rows as u32,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        // A pre-norm (`batches_only`) launches for batches only where the next kernel fuses
        // single-token steps, and then normalizes every row of the batch.
        for batches_only in [false, true] {
            let y0 = h.buf(&vec![0f32; rows * c]);
            let d = layer_norm(
                &h.gpu,
                &h.k,
                &h.step,
                c,
                1e-5,
                false,
                &xb,
                &gb,
                &bb,
                &y0,
                batches_only,
            );
            let got = h.run(&[&d], step, &y0, rows * c);
            let want = if batches_only && rows == 1 && h.k.fuses_decode_norm() {
                vec![0f32; c]
            } else {
                reference::layer_norm(&x, &g, &b, c, 1e-5)
            };
            let what = format!(
                "layer_norm rows={rows} c={c} pre={batches_only} {:?}",
                h.opts
            );
            assert_close(&got, &want, &what);
        }
        // RMSNorm: no centring, zeros bound as beta.
        let zb = h.buf(&vec![0f32; c]);
        let d = layer_norm(
            &h.gpu, &h.k, &h.step, c, 1e-6, true, &xb, &gb, &zb, &yb, false,
        );
        let got = h.run(&[&d], step, &yb, rows * c);
        assert_close(
            &got,
            &reference::rms_norm(&x, &g, c, 1e-6),
            &format!("rms_norm rows={rows} c={c} {:?}", h.opts),
        );
    }
}

#[test]
fn embed_gathers_across_chunks() {
    let Some(h) = Harness::new() else { return };
    let mut rng = Rng::new(4);
    let (v, c, n_pos, pos) = (23, 65, 20, 3);
    let tokens: Vec<u32> = vec![0, 22, 10, 11, 5, 12, 22];
    let t = tokens.len();
    let wte = random(&mut rng, v * c, 1.0);
    let wpe = random(&mut rng, n_pos * c, 1.0);
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        let (wpb, tb, xb) = (
            h.buf(&wpe),
            h.buf_bytes(bytemuck::cast_slice(&tokens)),
            h.buf(&vec![0f32; t * c]),
        );
        // Two chunks: rows 0..11 and 11..23.
        let mut ds = Vec::new();
        let mut seen = vec![0f32; v * c];
        let mut bufs = Vec::new();
        for (r0, r1) in [(0, 11), (11, v)] {
            let (m, s) = pack(&h.gpu, &wte[r0 * c..r1 * c], r1 - r0, c, dtype);
            // wte rows (r1 - r0, c) are exactly W given as (n, k) rows of a (C, rows) matrix.
            seen[r0 * c..r1 * c].copy_from_slice(&s);
            bufs.push((m, r0, r1));
        }
        for (b, r0, r1) in &bufs {
            ds.push(embed(
                &h.gpu,
                &h.k,
                &h.step,
                c,
                *r0..*r1,
                b,
                &tb,
                Some(&wpb),
                &xb,
            ));
        }
        let refs: Vec<&Dispatch> = ds.iter().collect();
        let got = h.run(
            &refs,
            Step {
                n_tokens: t as u32,
                pos: pos as u32,
                row0: 0,
                n_rows: 0,
            },
            &xb,
            t * c,
        );
        let mut want = vec![0f32; t * c];
        for (i, &tok) in tokens.iter().enumerate() {
            for j in 0..c {
                want[i * c + j] = seen[tok as usize * c + j] + wpe[(pos + i) * c + j];
            }
        }
        assert_close(&got, &want, &format!("embed {dtype}"));
    }
}

#[test]
fn attention_with_cache_matches_reference() {
    for h in Harness::variants() {
        attention_with_cache_matches_reference_on(&h);
    }
}

fn attention_with_cache_matches_reference_on(h: &Harness) {
    let mut rng = Rng::new(5);
    // (T, pos, n_head, n_kv_head, head_dim): multi-head, then grouped-query attention with
    // odd head counts and a single key/value head.
    for (t, pos, n_head, n_kv, hd) in [
        (1, 0, 1, 1, 4),
        (7, 5, 3, 3, 8),
        (1, 64, 12, 12, 64),
        (65, 0, 5, 5, 12),
        (3, 1, 2, 2, 256),
        (13, 4, 2, 2, 32),
        // Over 1024 keys: the cooperative kernel's online softmax across key chunks.
        (1, 1100, 2, 2, 8),
        (3, 1030, 1, 1, 4),
        // Grouped-query: 3 query heads per kv head, 1 kv head (multi-query), 7 per kv head.
        (5, 3, 9, 3, 16),
        (1, 20, 6, 2, 64),
        (9, 0, 5, 1, 12),
        (1, 1030, 14, 2, 64),
    ] {
        let heads = Heads {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        let (c, ckv, row) = (heads.q_c(), heads.kv_c(), heads.qkv_c());
        let n_pos = pos + t;
        let qkv = random(&mut rng, t * row, 2.0);
        // Earlier positions already in the cache.
        let mut kc = random(&mut rng, n_pos * ckv, 2.0);
        let mut vc = random(&mut rng, n_pos * ckv, 2.0);
        let kv = [kc.as_slice(), vc.as_slice()].concat();
        let (qb, kvb, ob) = (h.buf(&qkv), h.buf(&kv), h.buf(&vec![0f32; t * c]));
        let scale = 1.0 / (hd as f32).sqrt();
        // Single-token steps leave the store to attention (kv_store launches nothing).
        let store = kv_store(&h.gpu, &h.k, &h.step, heads, n_pos, &qb, &kvb);
        // The kernel the forward pass launches: single-token steps take the decode kernel
        // where the family has one (`Kernels::attention_decode`).
        let (s, k) = (&h.step, &h.k);
        let att = match attention_rows(&h.gpu, k, s, heads, scale, n_pos, &qb, &kvb, &ob) {
            Some(d) if t == 1 && k.attention_decode() => d,
            _ => attention(&h.gpu, k, s, heads, scale, n_pos, &qb, &kvb, &ob),
        };
        let step = Step {
            n_tokens: t as u32,
            pos: pos as u32,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&store, &att], step, &ob, t * c);
        let mut q = vec![0f32; t * c];
        for i in 0..t {
            let r = &qkv[i * row..(i + 1) * row];
            q[i * c..(i + 1) * c].copy_from_slice(&r[..c]);
            kc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c..c + ckv]);
            vc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c + ckv..]);
        }
        let want = reference::attention(&q, &kc, &vc, t, pos, n_head, n_kv, hd, scale);
        let what = format!(
            "attention T={t} pos={pos} heads={n_head}/{n_kv} hd={hd} {:?}",
            h.opts
        );
        assert_close(&got, &want, &what);
        // The cache now holds the batch's keys and values.
        let none = Step {
            n_tokens: 0,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let kgot = h.run(&[], none, &kvb, 2 * n_pos * ckv);
        assert_close(&kgot, &[kc, vc].concat(), &format!("kv cache: {what}"));
    }
}

#[test]
fn gated_matches_reference() {
    let Some(h) = Harness::new() else { return };
    let mut rng = Rng::new(14);
    for (t, f) in [(1, 4), (5, 67), (3, 1536)] {
        let gu = random(&mut rng, t * 2 * f, 4.0);
        let (gb, yb) = (h.buf(&gu), h.buf(&vec![0f32; t * f]));
        let d = gated(&h.gpu, &h.k, &h.step, f, 4, &gb, &yb);
        let step = Step {
            n_tokens: t as u32,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&d], step, &yb, t * f);
        let want: Vec<f32> = (0..t * f)
            .map(|i| {
                let (r, j) = (i / f, i % f);
                reference::silu(gu[r * 2 * f + j]) * gu[r * 2 * f + f + j]
            })
            .collect();
        assert_close(&got, &want, &format!("gated silu T={t} F={f}"));
    }
}

#[test]
fn reference_erf_is_accurate() {
    // Known values of erf.
    for (x, want) in [
        (0.0, 0.0),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (3.0, 0.9999779095030014),
        (-1.5, -0.9661051464753108),
    ] {
        assert!(
            (reference::erf(x) - want).abs() < 1e-12,
            "erf({x}) = {}",
            reference::erf(x)
        );
    }
}

#[test]
fn argmax_matches_host_argmax_and_flags_non_finite_logits() {
    // The cooperative family only (`Kernels::argmax_on_gpu`).
    for h in Harness::variants().iter().filter(|h| h.k.argmax_on_gpu()) {
        let mut rng = Rng::new(11);
        // Fewer values than workgroups, a few workgroups' worth, GPT-2's vocabulary, and more
        // than one value per invocation (past 256 × 256).
        for v in [100, 1000, 50257, 70000] {
            // (winner read back, tokens[0] after the step)
            let run = |row: &[f32]| {
                let lb = h.buf(row);
                let bb = h.buf(&vec![0.0; ARGMAX_BYTES / 4]);
                let tb = h.buf_bytes(bytemuck::cast_slice(&[5u32; 4]));
                let d = argmax(&h.gpu, &h.k, &h.step, v, &lb, &bb, &tb).unwrap();
                let step = Step {
                    n_tokens: 1,
                    pos: 0,
                    row0: 0,
                    n_rows: 1,
                };
                let got = h.run_with(|pass| d.encode(pass, 1), step, &bb, ARGMAX_BYTES / 4);
                let n = got.len();
                let best = [got[n - 2].to_bits(), got[n - 1].to_bits()];
                let token = h.run(&[], step, &tb, 1)[0].to_bits();
                (winner(best), token)
            };
            let mut row = random(&mut rng, v, 10.0);
            let what = format!("argmax V={v} {:?}", h.opts);
            let want = crate::sampler::argmax(&row);
            assert_eq!(run(&row), (Some(want), want), "{what}: random");
            // A tie between values that different lanes and workgroups see: the smaller index
            // wins, as on the host.
            let (early, late) = (v / 3 + 1, v * 3 / 4);
            row[early] = 20.0;
            row[late] = 20.0;
            assert_eq!(crate::sampler::argmax(&row), early as u32);
            assert_eq!(run(&row), (Some(early as u32), early as u32), "{what}: tie");
            // All values equal and negative: the first.
            assert_eq!(run(&vec![-4.0; v]), (Some(0), 0), "{what}: all equal");
            if v > 65536 + 10 {
                // One invocation sees both: 10 and 10 + 65536 (a tie), and a NaN after its
                // maximum.
                let mut r = vec![-1.0; v];
                r[10] = 5.0;
                r[10 + 65536] = 5.0;
                assert_eq!(run(&r), (Some(10), 10), "{what}: tie within an invocation");
                r[10 + 65536] = 6.0;
                assert_eq!(run(&r), (Some(65546), 65546), "{what}: later larger");
                r[10 + 65536] = f32::NAN;
                assert_eq!(run(&r), (None, 0), "{what}: NaN after the maximum");
            }
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut r = row.clone();
                r[v - 2] = bad;
                // The next step's token stays a valid id; the host reports the error.
                assert_eq!(run(&r), (None, 0), "{what}: {bad} at {}", v - 2);
            }
        }
    }
}

#[test]
fn rope_matches_reference() {
    for h in Harness::variants() {
        rope_matches_reference_on(&h);
    }
}

/// Rotary embedding in place on (T, ld) rows of q | k | v: odd head counts, partial rotation
/// (rot < head_dim), more query heads than key heads, positions past the first.
fn rope_matches_reference_on(h: &Harness) {
    let mut rng = Rng::new(12);
    // (T, pos, q_heads, k_heads, head_dim, rotary dims, base)
    for (t, pos, qh, kh, hd, rot, base) in [
        (1, 0, 1, 1, 4, 4, 10_000.0),
        (7, 5, 3, 3, 32, 8, 10_000.0),
        (5, 40, 5, 1, 12, 12, 500.0),
        (65, 3, 2, 2, 256, 128, 1e6),
        (3, 1, 4, 2, 16, 2, 10.0),
    ] {
        let ld = (qh + 2 * kh) * hd;
        let n_pos = pos + t;
        let x = random(&mut rng, t * ld, 2.0);
        let inv: Vec<f64> = (0..rot / 2)
            .map(|j| f64::powf(base, -((2 * j) as f64) / rot as f64))
            .collect();
        let table = rope_table(n_pos, &inv);
        let (xb, tb) = (h.buf(&x), h.buf(table.as_flattened()));
        let d = rope(
            &h.gpu,
            &h.k,
            &h.step,
            ld,
            hd,
            rot / 2,
            (qh, kh, qh * hd),
            &xb,
            &tb,
        );
        let step = Step {
            n_tokens: t as u32,
            pos: pos as u32,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&d], step, &xb, t * ld);
        let mut want = x.clone();
        for (i, row) in want.chunks_exact_mut(ld).enumerate() {
            let (q, k) = row.split_at_mut(qh * hd);
            reference::rope(q, pos + i, hd, rot, base);
            reference::rope(&mut k[..kh * hd], pos + i, hd, rot, base);
        }
        let what = format!(
            "rope T={t} pos={pos} heads={qh}/{kh} hd={hd} rot={rot} {:?}",
            h.opts
        );
        assert_close(&got, &want, &what);
    }
}

#[test]
fn add_positions_adds_rows_from_pos() {
    let Some(h) = Harness::new() else { return };
    let mut rng = Rng::new(13);
    let (t, c, n_pos, pos) = (5, 67, 12, 6);
    let x = random(&mut rng, t * c, 1.0);
    let wpe = random(&mut rng, n_pos * c, 1.0);
    let (xb, wb) = (h.buf(&x), h.buf(&wpe));
    let d = add_positions(&h.gpu, &h.k, &h.step, c, &wb, &xb);
    let step = Step {
        n_tokens: t as u32,
        pos: pos as u32,
        row0: 0,
        n_rows: 0,
    };
    let got = h.run(&[&d], step, &xb, t * c);
    let want: Vec<f32> = (0..t * c).map(|i| x[i] + wpe[pos * c + i]).collect();
    assert_close(&got, &want, "add_positions");
}

#[test]
fn batch_of_sequences_stores_and_attends_per_row() {
    for h in Harness::variants() {
        batch_of_sequences_stores_and_attends_per_row_on(&h);
    }
}

/// A batched decode step: each row is one token of its own sequence, at its own position and
/// KV-cache slot (`RowMap`); kv_store writes there and attention reads that slot only.
fn batch_of_sequences_stores_and_attends_per_row_on(h: &Harness) {
    use crate::model::forward::RowMap;
    let mut rng = Rng::new(21);
    let (slots, n_pos) = (3, 20);
    // (n_head, n_kv_head, head_dim), rows as (position, slot); a single row is stored by
    // attention itself (kv_store launches nothing for it).
    let batches: [&[(usize, usize)]; 2] = [&[(5, 0), (0, 2), (19, 1)], &[(11, 2)]];
    for ((n_head, n_kv, hd), rows) in [(6, 2, 16), (12, 12, 64), (3, 3, 36)]
        .into_iter()
        .flat_map(|h| batches.map(|b| (h, b)))
    {
        let heads = Heads {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        let (c, ckv, row) = (heads.q_c(), heads.kv_c(), heads.qkv_c());
        let t = rows.len();
        let qkv = random(&mut rng, t * row, 2.0);
        let mut kv = random(&mut rng, slots * 2 * n_pos * ckv, 2.0);
        let (qb, kvb, ob) = (h.buf(&qkv), h.buf(&kv), h.buf(&vec![0f32; t * c]));
        let scale = 1.0 / (hd as f32).sqrt();
        let store = kv_store(&h.gpu, &h.k, &h.step, heads, n_pos, &qb, &kvb);
        let (s, k) = (&h.step, &h.k);
        let att = match attention_rows(&h.gpu, k, s, heads, scale, n_pos, &qb, &kvb, &ob) {
            Some(d) => d,
            None => attention(&h.gpu, k, s, heads, scale, n_pos, &qb, &kvb, &ob),
        };
        let mut map: RowMap = bytemuck::Zeroable::zeroed();
        map.per_row = 1;
        for (i, &(p, s)) in rows.iter().enumerate() {
            map.rows[i] = [p as u32, s as u32, 0, 0];
        }
        h.gpu
            .queue
            .write_buffer(&h.step, 16, bytemuck::bytes_of(&map));
        let step = Step {
            n_tokens: t as u32,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&store, &att], step, &ob, t * c);
        let mut want = Vec::new();
        for (i, &(p, s)) in rows.iter().enumerate() {
            let r = &qkv[i * row..(i + 1) * row];
            let keys = s * 2 * n_pos * ckv;
            let values = keys + n_pos * ckv;
            kv[keys + p * ckv..keys + (p + 1) * ckv].copy_from_slice(&r[c..c + ckv]);
            kv[values + p * ckv..values + (p + 1) * ckv].copy_from_slice(&r[c + ckv..]);
            let (kc, vc) = (
                &kv[keys..keys + (p + 1) * ckv],
                &kv[values..values + (p + 1) * ckv],
            );
            let q = &r[..c];
            want.extend(reference::attention(
                q, kc, vc, 1, p, n_head, n_kv, hd, scale,
            ));
        }
        let what = format!(
            "per-row attention rows={} heads={n_head}/{n_kv} hd={hd} {:?}",
            rows.len(),
            h.opts
        );
        assert_close(&got, &want, &what);
        // The cache holds each row's key and value in its slot, the rest untouched.
        let none = Step {
            n_tokens: 0,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let cache = h.run(&[], none, &kvb, kv.len());
        assert_close(&cache, &kv, &format!("{what}: cache"));
        map.per_row = 0;
        h.gpu
            .queue
            .write_buffer(&h.step, 16, bytemuck::bytes_of(&map));
    }
}
