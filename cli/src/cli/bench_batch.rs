//! `wgpt bench --batch 1,4,8,16`: aggregate decode speed of B sequences decoded together by
//! the batched [`Engine`] (tokens of all sequences per second of wall time).

use std::time::Instant;

use wgpt::{Engine, Model, SamplerConfig, SequenceParams};

/// (test name, mean, sd) of the aggregate decode tokens/s for each batch size: B sequences
/// with 8-token prompts are prefilled (not timed), then `gen` decode steps over all of them
/// are timed; greedy sampling. One warm-up run, then `reps` timed ones.
pub fn rows(
    model: &Model,
    batches: &[usize],
    gen: usize,
    reps: usize,
    tokens: &dyn Fn(usize) -> Vec<u32>,
    stats: fn(&[f64]) -> (f64, f64),
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let n_ctx = model.config().n_ctx;
    let vocab = model.config().vocab_size as u32;
    let mut out = Vec::new();
    for &b in batches {
        let mut engine = Engine::new(model, b)?;
        let mut rates = Vec::new();
        for rep in 0..=reps {
            for s in 0..b {
                // Different prompts, so that the sequences differ.
                let mut prompt = tokens(8.min(n_ctx - 1));
                prompt[0] = (prompt[0] + 97 * s as u32) % vocab;
                let params = SequenceParams::new(SamplerConfig::greedy(), gen + 1);
                engine.add(&prompt, params)?;
            }
            engine.step()?; // the prefills and first tokens
            let t0 = Instant::now();
            let mut n = 0;
            for _ in 0..gen {
                n += engine.step()?.iter().filter(|o| o.token.is_some()).count();
            }
            let wall = t0.elapsed().as_secs_f64();
            while !engine.is_empty() {
                engine.step()?;
            }
            if rep > 0 {
                rates.push(n as f64 / wall);
            }
            tick();
        }
        let (mean, sd) = stats(&rates);
        out.push((format!("tg{gen} batch {b}"), mean, sd));
    }
    Ok(out)
}
