//! Embedding gathers, the gated feed-forward, argmax, rotary and learned positions.

use super::*;

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
                1.0,
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
