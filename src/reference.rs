//! Plain f32 CPU versions of every kernel: the oracle the GPU tests compare against, and the
//! clearest statement of the math. Shapes are row-major.

/// LayerNorm of each row of x (rows, c).
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], c: usize, eps: f32) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..c {
            yr[i] = ((xr[i] as f64 - mean) * inv) as f32 * gamma[i] + beta[i];
        }
    }
    y
}

/// RMSNorm of each row of x (rows, c): x / sqrt(mean(x²) + eps) · gamma.
pub fn rms_norm(x: &[f32], gamma: &[f32], c: usize, eps: f32) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..c {
            yr[i] = (xr[i] as f64 * inv) as f32 * gamma[i];
        }
    }
    y
}

/// SiLU, x·sigmoid(x).
pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// y = x·wᵀ + b with x (rows, k), w (n, k), b (n).
pub fn linear(x: &[f32], w: &[f32], b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let rows = x.len() / k;
    let mut y = vec![0.0; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let mut acc = 0f64;
            for i in 0..k {
                acc += x[r * k + i] as f64 * w[j * k + i] as f64;
            }
            y[r * n + j] = acc as f32 + b[j];
        }
    }
    y
}

/// Rotary position embedding of one token's heads, in place (GPT-NeoX / Llama half-split
/// pairs): x holds heads of `head_dim`; in each, dimensions j and j + rot/2 (j < rot/2) are
/// rotated by the angle pos·base^(−2j/rot); dimensions past `rot` are unchanged.
pub fn rope(x: &mut [f32], pos: usize, head_dim: usize, rot: usize, base: f64) {
    let half = rot / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for j in 0..half {
            let angle = pos as f64 * base.powf(-((2 * j) as f64) / rot as f64);
            let (a, b) = (head[j] as f64, head[j + half] as f64);
            head[j] = (a * angle.cos() - b * angle.sin()) as f32;
            head[j + half] = (b * angle.cos() + a * angle.sin()) as f32;
        }
    }
}

/// GELU, tanh approximation (`gelu_new`).
pub fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())) as f32
}

/// GELU, exact erf form (`gelu`).
pub fn gelu_erf(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

/// erf to ~1e-15 (series for small |x|, continued fraction otherwise).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // Maclaurin series.
        let mut sum = a;
        let mut term = a;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -a * a / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), accurate for large a.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
    };
    r.copysign(x)
}

/// Causal attention of t queries at positions pos..pos+t over the keys 0..=their own:
/// q (t, n_head·hd); k, v (pos + t, n_kv·hd); query head h uses key/value head
/// h / (n_head / n_kv) (grouped-query attention; n_kv = n_head is multi-head attention).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    pos: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    scale: f32,
) -> Vec<f32> {
    attention_windowed(q, k, v, (t, pos), (n_head, n_kv, hd), scale, None, None)
}

/// [`attention`] where each query sees only the last `window` positions (its own included)
/// and scores become cap·tanh(score / cap) with a `softcap`.
#[allow(clippy::too_many_arguments)]
pub fn attention_windowed(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (t, pos): (usize, usize),
    (n_head, n_kv, hd): (usize, usize, usize),
    scale: f32,
    window: Option<usize>,
    softcap: Option<f32>,
) -> Vec<f32> {
    let (c, ckv) = (n_head * hd, n_kv * hd);
    let group = n_head / n_kv;
    let mut out = vec![0.0; t * c];
    for i in 0..t {
        for h in 0..n_head {
            let qi = &q[i * c + h * hd..i * c + (h + 1) * hd];
            let kh = h / group;
            let n_keys = pos + i + 1;
            let first = window.map_or(0, |w| n_keys.saturating_sub(w));
            let scores: Vec<f64> = (0..n_keys)
                .map(|j| {
                    let kj = &k[j * ckv + kh * hd..j * ckv + (kh + 1) * hd];
                    qi.iter()
                        .zip(kj)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .map(|s| match softcap {
                    Some(cap) => cap as f64 * (s / cap as f64).tanh(),
                    None => s,
                })
                .enumerate()
                .map(|(j, s)| if j < first { f64::NEG_INFINITY } else { s })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = (0..n_keys)
                    .map(|j| e[j] * v[j * ckv + kh * hd + d] as f64)
                    .sum();
                out[i * c + h * hd + d] = (acc / z) as f32;
            }
        }
    }
    out
}
