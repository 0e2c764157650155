//! LayerNorm / RMSNorm.

use super::*;

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
                (false, batches_only),
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
            &h.gpu,
            &h.k,
            &h.step,
            c,
            1e-6,
            true,
            &xb,
            &gb,
            &zb,
            &yb,
            (false, false),
        );
        let got = h.run(&[&d], step, &yb, rows * c);
        assert_close(
            &got,
            &reference::rms_norm(&x, &g, c, 1e-6),
            &format!("rms_norm rows={rows} c={c} {:?}", h.opts),
        );
    }
}
