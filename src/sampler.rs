//! Choosing the next token from logits on the CPU: repetition penalty, temperature, top-k,
//! top-p, then a seeded draw (or argmax when the temperature is 0).

use crate::error::{Error, Result};
use crate::util::Rng;

/// Sampling settings. `temperature == 0` means greedy.
///
/// The defaults, which the `wgpt` command line uses as its own defaults too, are: temperature
/// 0.8, top-k 40, top-p 0.95, repetition penalty 1 (off), seed [`SamplerConfig::DEFAULT_SEED`]
/// (the same seed gives the same text).
///
/// ```
/// let s = wgpt::SamplerConfig::default().with_temperature(0.5).with_seed(7);
/// assert_eq!((s.temperature, s.top_k, s.seed), (0.5, 40, 7));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SamplerConfig {
    /// Softmax temperature; 0 is greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p`, in (0, 1] (1 = all).
    pub top_p: f32,
    /// HF-style repetition penalty over prompt and generated tokens, > 0 (1 = off).
    pub repeat_penalty: f32,
    /// Seed of the random draws.
    pub seed: u64,
}

impl SamplerConfig {
    /// The default seed (the speed of light in m/s).
    pub const DEFAULT_SEED: u64 = 299_792_458;

    /// Argmax decoding.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }

    /// With this temperature (0 = greedy).
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// With this top-k (0 = all).
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// With this top-p.
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }

    /// With this repetition penalty (1 = off).
    pub fn with_repeat_penalty(mut self, r: f32) -> Self {
        self.repeat_penalty = r;
        self
    }

    /// With this seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Rejects values that have no meaning.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "top-p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "repeat penalty must be > 0, got {}",
                self.repeat_penalty
            )));
        }
        Ok(())
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.0,
            seed: Self::DEFAULT_SEED,
        }
    }
}

/// A sampler with its own random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    /// A sampler for `cfg` (validated), its random stream seeded with `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        let rng = Rng::new(cfg.seed);
        Ok(Sampler { cfg, rng })
    }

    /// Whether [`Sampler::sample`] is a plain argmax of the logits (temperature 0 and no
    /// repetition penalty), which the session can then find on the GPU
    /// ([`crate::Session::forward_argmax`]).
    pub fn is_argmax(&self) -> bool {
        self.cfg.temperature == 0.0 && self.cfg.repeat_penalty == 1.0
    }

    /// Picks the next token. `history` is the prompt plus the tokens generated so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut l = logits.to_vec();
        if self.cfg.repeat_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in history {
                if seen.insert(t) {
                    if let Some(v) = l.get_mut(t as usize) {
                        *v = if *v > 0.0 {
                            *v / self.cfg.repeat_penalty
                        } else {
                            *v * self.cfg.repeat_penalty
                        };
                    }
                }
            }
        }
        if self.cfg.temperature == 0.0 {
            return argmax(&l);
        }
        // Candidates sorted by logit, descending (ties by lower id).
        let mut idx: Vec<u32> = (0..l.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]).then(a.cmp(b));
        if self.cfg.top_k > 0 && self.cfg.top_k < idx.len() {
            idx.select_nth_unstable_by(self.cfg.top_k - 1, by_logit);
            idx.truncate(self.cfg.top_k);
        }
        idx.sort_unstable_by(by_logit);
        let max = l[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((l[i as usize] - max) / self.cfg.temperature).exp())
            .collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.next_f32() * total;
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                return idx[i];
            }
            r -= p;
        }
        idx[probs.len() - 1]
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_max() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn repeat_penalty_changes_choice() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[1]), 3);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproducible() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: 7,
        };
        let mut s = Sampler::new(cfg).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
        }
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: 42,
        };
        let logits = [0.0f32; 50];
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..30).map(|_| s.sample(&logits, &[])).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg).unwrap();
            (0..30).map(|_| s.sample(&logits, &[])).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 5);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top-p 0.5 keeps only token 0.
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repeat_penalty: 1.0,
            seed: 1,
        };
        let mut s = Sampler::new(cfg).unwrap();
        let logits = [3.0, 2.0, 1.0, 0.0];
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), 0);
        }
    }

    #[test]
    fn temperature_sampling_matches_softmax() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: 3,
        };
        let mut s = Sampler::new(cfg).unwrap();
        let logits = [0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&logits, &[]) == 1).count();
        let p = ones as f64 / n as f64;
        assert!((p - 0.75).abs() < 0.02, "p = {p}");
    }

    #[test]
    fn rejects_bad_options() {
        assert!(Sampler::new(SamplerConfig {
            top_p: 0.0,
            ..SamplerConfig::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            top_p: 1.5,
            ..SamplerConfig::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            temperature: -1.0,
            ..SamplerConfig::default()
        })
        .is_err());
    }
}
