//! Choosing the next token from logits on the CPU: logit bias, repetition / presence /
//! frequency penalties, temperature, top-k, top-p, then a seeded draw (or argmax when the
//! temperature is 0). No step sorts the whole vocabulary: top-k and top-p select partially,
//! and a draw without either walks the probabilities in id order. The penalties keep counts
//! of the tokens seen, updated with the new tokens only.

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
    /// OpenAI's `presence_penalty`, in [-2, 2]: subtracted once from the logit of every token
    /// generated so far (0 = off).
    pub presence_penalty: f32,
    /// OpenAI's `frequency_penalty`, in [-2, 2]: subtracted from a token's logit once per
    /// time it was generated (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens before anything else (OpenAI's `logit_bias`;
    /// -100 bans a token, 100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
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

    /// With these presence and frequency penalties (0 = off).
    pub fn with_penalties(mut self, presence: f32, frequency: f32) -> Self {
        self.presence_penalty = presence;
        self.frequency_penalty = frequency;
        self
    }

    /// With this bias added to the logits of these tokens.
    pub fn with_logit_bias(mut self, bias: Vec<(u32, f32)>) -> Self {
        self.logit_bias = bias;
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
        for (name, v) in [
            ("presence", self.presence_penalty),
            ("frequency", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(Error::InvalidInput(format!(
                    "the {name} penalty must be in [-2, 2], got {v}"
                )));
            }
        }
        if let Some((t, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| !(-100.0..=100.0).contains(b))
        {
            return Err(Error::InvalidInput(format!(
                "the logit bias of token {t} must be in [-100, 100], got {b}"
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: Self::DEFAULT_SEED,
        }
    }
}

/// A sampler with its own random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    seen: Seen,
}

/// The tokens a sampler has seen, counted as they arrive: every token of the history (the
/// repetition penalty's set) and, apart, those after the prompt (the presence and frequency
/// penalties' counts). The history at the first [`Sampler::sample`] is the prompt.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// History tokens counted so far (None before the first call).
    counted: Option<usize>,
    prompt_len: usize,
    all: std::collections::HashSet<u32>,
    generated: std::collections::HashMap<u32, u32>,
}

impl Seen {
    /// Counts the tokens of `history` not counted yet (all of it again if it is not the
    /// continuation of what was counted, e.g. a shorter history).
    fn update(&mut self, history: &[u32]) {
        let from = match self.counted {
            Some(n) if n <= history.len() => n,
            Some(_) => {
                *self = Seen::default();
                0
            }
            None => 0,
        };
        if self.counted.is_none() {
            self.prompt_len = history.len();
        }
        for (i, &t) in history.iter().enumerate().skip(from) {
            self.all.insert(t);
            if i >= self.prompt_len {
                *self.generated.entry(t).or_insert(0) += 1;
            }
        }
        self.counted = Some(history.len());
    }
}

impl Sampler {
    /// A sampler for `cfg` (validated), its random stream seeded with `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        let rng = Rng::new(cfg.seed);
        Ok(Sampler {
            cfg,
            rng,
            seen: Seen::default(),
        })
    }

    /// Whether [`Sampler::sample`] is a plain argmax of the logits (temperature 0 and no
    /// penalty or bias), which the session can then find on the GPU
    /// ([`crate::Session::forward_argmax`]).
    pub fn is_argmax(&self) -> bool {
        self.cfg.temperature == 0.0 && !self.adjusts()
    }

    /// Whether any bias or penalty changes the logits.
    fn adjusts(&self) -> bool {
        let c = &self.cfg;
        c.repeat_penalty != 1.0
            || c.presence_penalty != 0.0
            || c.frequency_penalty != 0.0
            || !c.logit_bias.is_empty()
    }

    /// Picks the next token. `history` is the prompt plus the tokens generated so far (the
    /// same growing list from call to call: only its new tokens are counted).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if !self.adjusts() {
            return self.pick(logits);
        }
        let mut l = logits.to_vec();
        let c = &self.cfg;
        for &(t, b) in &c.logit_bias {
            if let Some(v) = l.get_mut(t as usize) {
                *v += b;
            }
        }
        self.seen.update(history);
        if c.repeat_penalty != 1.0 {
            for &t in &self.seen.all {
                if let Some(v) = l.get_mut(t as usize) {
                    *v = if *v > 0.0 {
                        *v / c.repeat_penalty
                    } else {
                        *v * c.repeat_penalty
                    };
                }
            }
        }
        if c.presence_penalty != 0.0 || c.frequency_penalty != 0.0 {
            for (&t, &n) in &self.seen.generated {
                if let Some(v) = l.get_mut(t as usize) {
                    *v -= c.presence_penalty + c.frequency_penalty * n as f32;
                }
            }
        }
        self.pick(&l)
    }

    /// Argmax, or a draw from the softmax at the temperature over the top-k / top-p
    /// candidates.
    fn pick(&mut self, l: &[f32]) -> u32 {
        let c = &self.cfg;
        if c.temperature == 0.0 {
            return argmax(l);
        }
        let cut_k = c.top_k > 0 && c.top_k < l.len();
        if !cut_k && c.top_p >= 1.0 {
            // Every token is a candidate: one pass for the weights, one for the draw.
            let max = l[argmax(l) as usize];
            let weight = |x: f32| ((x - max) / c.temperature).exp();
            let total: f32 = l.iter().map(|&x| weight(x)).sum();
            let mut r = self.rng.next_f32() * total;
            let mut last = 0;
            for (i, &x) in l.iter().enumerate() {
                let p = weight(x);
                if p > 0.0 {
                    if r < p {
                        return i as u32;
                    }
                    r -= p;
                    last = i;
                }
            }
            return last as u32;
        }
        // Candidates by logit, descending (ties by lower id): the top-k by partial selection,
        // and for top-p without top-k, growing prefixes until one holds the nucleus.
        let by_logit = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]).then(a.cmp(b));
        let mut idx: Vec<u32> = (0..l.len() as u32).collect();
        let max = l[argmax(l) as usize];
        let weight = |x: f32| ((x - max) / c.temperature).exp();
        // Top-p without top-k normalizes over the whole vocabulary, top-k over its k.
        let whole: f32 = match cut_k {
            true => 0.0,
            false => l.iter().map(|&x| weight(x)).sum(),
        };
        let mut keep = if cut_k { c.top_k } else { 64.min(l.len()) };
        loop {
            if keep < idx.len() {
                idx.select_nth_unstable_by(keep - 1, by_logit);
            }
            if cut_k || keep == l.len() {
                break;
            }
            // Enough candidates once their share of the whole softmax reaches top-p.
            let head: f32 = idx[..keep].iter().map(|&i| weight(l[i as usize])).sum();
            if head >= c.top_p * whole {
                break;
            }
            keep = (keep * 4).min(l.len());
        }
        idx.truncate(keep);
        idx.sort_unstable_by(by_logit);
        let mut probs: Vec<f32> = idx.iter().map(|&i| weight(l[i as usize])).collect();
        let total: f32 = if cut_k { probs.iter().sum() } else { whole };
        probs.iter_mut().for_each(|p| *p /= total);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
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

    /// Temperature 1 with this top-k, top-p and seed, nothing else.
    fn at_t1(top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            top_k,
            top_p,
            seed,
            ..SamplerConfig::greedy()
        }
    }

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
        let cfg = at_t1(1, 1.0, 7);
        let mut s = Sampler::new(cfg).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
        }
        let cfg = at_t1(0, 1.0, 42);
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
        let cfg = at_t1(0, 0.5, 1);
        let mut s = Sampler::new(cfg).unwrap();
        let logits = [3.0, 2.0, 1.0, 0.0];
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), 0);
        }
    }

    #[test]
    fn temperature_sampling_matches_softmax() {
        let cfg = at_t1(0, 1.0, 3);
        let mut s = Sampler::new(cfg).unwrap();
        let logits = [0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&logits, &[]) == 1).count();
        let p = ones as f64 / n as f64;
        assert!((p - 0.75).abs() < 0.02, "p = {p}");
    }

    #[test]
    fn logit_bias_bans_and_forces() {
        let logits = [0.1, 3.0, -1.0, 2.9];
        let ban = SamplerConfig::greedy().with_logit_bias(vec![(1, -100.0)]);
        assert_eq!(Sampler::new(ban).unwrap().sample(&logits, &[]), 3);
        let force = SamplerConfig::default().with_logit_bias(vec![(2, 100.0)]);
        let mut s = Sampler::new(force).unwrap();
        assert!((0..50).all(|_| s.sample(&logits, &[]) == 2));
    }

    #[test]
    fn presence_and_frequency_penalties_count_generated_tokens_only() {
        // Prompt [1, 1]; then 3 is generated twice, 0 once.
        let logits = [2.0, 2.5, 0.0, 3.0];
        let cfg = SamplerConfig::greedy().with_penalties(0.0, 0.6);
        let mut s = Sampler::new(cfg).unwrap();
        assert_eq!(s.sample(&logits, &[1, 1]), 3); // nothing generated yet: 3 wins
                                                   // 3 generated once: 3.0 - 0.6 = 2.4 < 2.5 (the prompt's 1 is not penalized).
        assert_eq!(s.sample(&logits, &[1, 1, 3]), 1);
        // Presence 0.9 and frequency 0.6 after generating 3, 0, 3: token 0 drops to
        // 2.0 - 0.9 - 0.6 = 0.5, token 3 to 3.0 - 0.9 - 1.2 = 0.9, below token 2's 1.0.
        let cfg = SamplerConfig::greedy().with_penalties(0.9, 0.6);
        let mut s = Sampler::new(cfg).unwrap();
        s.sample(&logits, &[1, 1]);
        let l = [2.0, 0.0, 1.0, 3.0];
        assert_eq!(s.sample(&l, &[1, 1, 3, 0, 3]), 2);
        // A history that is not a continuation is counted afresh (as a new prompt).
        assert_eq!(s.sample(&l, &[3]), 3);
        let bad = SamplerConfig::default().with_penalties(2.5, 0.0);
        assert!(Sampler::new(bad).is_err());
    }

    /// A nucleus wider than the first partial selection (64 candidates) is found by growing
    /// it, and matches the nucleus of a full sort: every draw is inside it, and the top
    /// token's share is its renormalized probability.
    #[test]
    fn top_p_without_top_k_selects_partially_and_exactly() {
        let logits: Vec<f32> = (0..5000).map(|i| -(i as f32) / 400.0).collect();
        let weights: Vec<f64> = logits.iter().map(|&x| (x as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let (mut acc, mut nucleus) = (0.0, 0);
        while acc < 0.9 {
            acc += weights[nucleus] / total;
            nucleus += 1;
        }
        assert!(nucleus > 256, "a nucleus of {nucleus}");
        let cfg = at_t1(0, 0.9, 11);
        let mut s = Sampler::new(cfg).unwrap();
        let draws: Vec<u32> = (0..20_000).map(|_| s.sample(&logits, &[])).collect();
        let widest = *draws.iter().max().unwrap() as usize;
        assert!(
            widest < nucleus && widest > nucleus - 50,
            "{widest} vs {nucleus}"
        );
        let p0 = weights[0] / weights[..nucleus].iter().sum::<f64>();
        let share = draws.iter().filter(|&&d| d == 0).count() as f64 / draws.len() as f64;
        assert!((share - p0).abs() < 0.002, "{share} vs {p0}");
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
