//! The block formats on the GPU: every weight the kernels see equals ggml's dequantization
//! (`crate::format::quant::dequantize`, itself checked against the `gguf` package in
//! `tests/quant.rs`) bit for bit, and matmuls over quantized and mixed-format matrices match
//! the reference on the dequantized weights (tolerance as in `super`).

use super::matmul::fused_norm;
use super::*;
use crate::format::quant::dequantize;
use crate::format::DType;

/// Random valid blocks of `dtype` for `rows` rows of `k` weights: random quant and scale bytes,
/// finite f16 scale fields of realistic size (some negative, some zero).
fn random_blocks(rng: &mut Rng, dtype: DType, rows: usize, k: usize) -> Vec<u8> {
    let (len, size) = (dtype.block_len(), dtype.block_bytes());
    let halves: &[usize] = match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        _ => &[0],
    };
    let mut out = Vec::with_capacity(rows * k / len * size);
    for i in 0..rows * k / len {
        let mut b: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
        for &o in halves {
            let v = match i % 7 {
                3 => 0.0,
                _ => (rng.next_f32() * 2.0 - 1.0) * 0.02,
            };
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        out.extend(b);
    }
    out
}

/// The barrier-free and the cooperative family (the subgroup variant of the barrier-free one
/// reads weights with the same code; each format is another set of pipelines to compile).
fn two_families() -> Vec<Harness> {
    Harness::variants().into_iter().take(2).collect()
}

const FORMATS: [DType; 8] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
];

/// An (n, k) matrix of random `dtype` blocks on the GPU, and its dequantized (n, k) values.
fn blocks_matrix(
    h: &Harness,
    rng: &mut Rng,
    dtype: DType,
    n: usize,
    k: usize,
) -> (WeightMatrix, Vec<f32>) {
    let bytes = random_blocks(rng, dtype, n, k);
    let row = dtype.bytes_of(k).unwrap();
    let rows = |j: usize| &bytes[j * row..(j + 1) * row];
    let m = WeightMatrix::from_parts(
        &h.gpu,
        "test",
        k,
        &[(
            n,
            WeightDtype::for_file(dtype),
            Columns::Blocks(dtype, &rows),
        )],
    )
    .unwrap();
    (m, dequantize(dtype, &bytes))
}

fn spec(k: usize, n: usize, rows: usize) -> MatmulSpec {
    MatmulSpec {
        k,
        n,
        ld_y: n,
        y_col0: 0,
        act: 0,
        accumulate: false,
        lm_rows: false,
        max_rows: rows,
        layer: "test",
    }
}

fn step(rows: usize) -> Step {
    Step {
        n_tokens: rows as u32,
        pos: 0,
        row0: 0,
        n_rows: 0,
    }
}

/// Y = I·W: the batched kernels (which dequantize each weight) return every weight exactly.
#[test]
fn batched_kernels_read_ggml_weights_bit_exactly() {
    let mut rng = Rng::new(11);
    for h in two_families() {
        for dtype in FORMATS {
            let (k, n) = (256, 20);
            let (m, w) = blocks_matrix(&h, &mut rng, dtype, n, k);
            let eye: Vec<f32> = (0..k * k).map(|i| (i / k == i % k) as u8 as f32).collect();
            let (xb, bb, yb) = (h.buf(&eye), h.buf(&vec![0.0; n]), h.buf(&vec![0.0; k * n]));
            let d = matmul(
                &h.gpu,
                &h.k,
                &h.step,
                spec(k, n, k),
                &xb,
                &m,
                &bb,
                &yb,
                None,
            );
            let got = h.run_mm(&d, step(k), &yb, k * n);
            for kk in 0..k {
                for nn in 0..n {
                    let (g, want) = (got[kk * n + nn], w[nn * k + kk]);
                    assert!(
                        g == want,
                        "{dtype} {:?}: W[{kk}, {nn}] = {g} on the GPU, ggml gives {want}",
                        h.opts
                    );
                }
            }
        }
    }
}

/// One row (decode kernels) and batches, quantized and mixed-format matrices, against the
/// reference on the dequantized weights.
#[test]
fn quantized_matmul_matches_reference() {
    let mut rng = Rng::new(12);
    for h in two_families() {
        for (i, dtype) in FORMATS.into_iter().enumerate() {
            for rows in [1, 17] {
                let (k, n) = (512, 27 + i);
                let (m, w) = blocks_matrix(&h, &mut rng, dtype, n, k);
                check(&h, &mut rng, &m, &w, k, n, rows, &format!("{dtype}"));
            }
        }
        // q, k and v of a Q4_K_M file (Q4_K, Q4_K, Q6_K), then a float part: three textures,
        // one launch each, writing their columns of Y and reading their part of the bias.
        let k = 256;
        let (na, nb, nf) = (24, 12, 9);
        let qa = random_blocks(&mut rng, DType::Q4K, na, k);
        let qb = random_blocks(&mut rng, DType::Q6K, nb, k);
        let f = random(&mut rng, nf * k, 0.5);
        let (ra, rb) = (
            DType::Q4K.bytes_of(k).unwrap(),
            DType::Q6K.bytes_of(k).unwrap(),
        );
        let rows_a = |j: usize| &qa[j * ra..(j + 1) * ra];
        let rows_b = |j: usize| &qb[j * rb..(j + 1) * rb];
        let at = |kk: usize, j: usize| f[j * k + kk];
        let m = WeightMatrix::from_parts(
            &h.gpu,
            "mixed",
            k,
            &[
                (na, WeightDtype::Q4K, Columns::Blocks(DType::Q4K, &rows_a)),
                (nb, WeightDtype::Q6K, Columns::Blocks(DType::Q6K, &rows_b)),
                (nf, WeightDtype::F32, Columns::Values(&at)),
            ],
        )
        .unwrap();
        assert_eq!(m.parts.len(), 3);
        let mut w = dequantize(DType::Q4K, &qa);
        w.extend(dequantize(DType::Q6K, &qb));
        w.extend(&f);
        for rows in [1, 9] {
            check(&h, &mut rng, &m, &w, k, na + nb + nf, rows, "mixed");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    h: &Harness,
    rng: &mut Rng,
    m: &WeightMatrix,
    w: &[f32],
    k: usize,
    n: usize,
    rows: usize,
    what: &str,
) {
    let x = random(rng, rows * k, 1.0);
    let b = random(rng, n, 0.5);
    let (xb, bb, yb) = (h.buf(&x), h.buf(&b), h.buf(&vec![0.0; rows * n]));
    let d = matmul(
        &h.gpu,
        &h.k,
        &h.step,
        spec(k, n, rows),
        &xb,
        m,
        &bb,
        &yb,
        None,
    );
    let got = h.run_mm(&d, step(rows), &yb, rows * n);
    let want = reference::linear(&x, w, &b, k, n);
    assert_close(&got, &want, &format!("{what} rows={rows} {:?}", h.opts));
}

/// The one-row kernels' fused LayerNorm over block formats (matvec_quant.wgsl with
/// fused_norm.wgsl, matvec_wide.wgsl): where a family fuses, x is a zeros buffer, so only the
/// kernel's own normalization of `src` can give linear(LN(src)).
#[test]
fn quantized_matvec_applies_fused_layer_norm() {
    let mut rng = Rng::new(13);
    let fusing = Harness::variants()
        .into_iter()
        .filter(|h| h.k.fuses_decode_norm());
    for h in fusing {
        for (dtype, rms) in [
            (DType::Q8_0, false),
            (DType::Q4_0, false),
            (DType::Q6K, true),
        ] {
            let (k, n) = (768, 40);
            let (m, w) = blocks_matrix(&h, &mut rng, dtype, n, k);
            let src: Vec<f32> = random(&mut rng, k, 2.0).iter().map(|v| v + 0.7).collect();
            let g = random(&mut rng, k, 1.0);
            let be = if rms {
                vec![0.0; k]
            } else {
                random(&mut rng, k, 1.0)
            };
            let x = if rms {
                reference::rms_norm(&src, &g, k, 1e-5)
            } else {
                reference::layer_norm(&src, &g, &be, k, 1e-5)
            };
            let b = random(&mut rng, n, 0.5);
            let (srcb, gb, beb) = (h.buf(&src), h.buf(&g), h.buf(&be));
            let (zeros, bb, yb) = (h.buf(&vec![0.0; k]), h.buf(&b), h.buf(&vec![0.0; n]));
            let norm = fused_norm(&srcb, &gb, &beb, rms);
            let d = matmul(
                &h.gpu,
                &h.k,
                &h.step,
                spec(k, n, 1),
                &zeros,
                &m,
                &bb,
                &yb,
                Some(norm),
            );
            let got = h.run_mm(&d, step(1), &yb, n);
            let want = reference::linear(&x, &w, &b, k, n);
            assert_close(
                &got,
                &want,
                &format!("fused norm {dtype} rms={rms} {:?}", h.opts),
            );
        }
    }
}
