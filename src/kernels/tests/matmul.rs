//! The matmul kernels (batch, one-row, LM-head window) and the norm a one-row kernel fuses.

use super::*;

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
    // (rows, K, N, ld_y, first column): a slice that starts and ends anywhere (stored a column
    // at a time), and one aligned to 16 bytes that ends half-way through an 8-column group
    // (stored four columns at a time in the barrier-free family: an LM-head texture of a
    // vocabulary split in chunks).
    for shape in [(9, 12, 11, 30, 17), (9, 12, 12, 40, 16)] {
        lm_head_window_on(h, shape);
    }
}

fn lm_head_window_on(h: &Harness, (rows, k, n, ld, col0): (usize, usize, usize, usize, usize)) {
    let mut rng = Rng::new(2);
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
pub(super) fn fused_norm<'a>(
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
                &h.gpu,
                &h.k,
                &h.step,
                k,
                1e-5,
                rms,
                &srcb,
                &gb,
                &beb,
                &yb,
                (false, false),
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
