//! `wgpt bench --batch 1,4,8,16`: aggregate decode speed of B sequences decoded together by
//! the batched [`Engine`] (tokens of all sequences per second of wall time).

use std::time::Instant;

use wgpt::{Engine, Model, SamplerConfig, SequenceParams};

use super::bench::{summarize, ProfileRows};

/// (test name, mean, sd) of the aggregate decode tokens/s for each batch size: B sequences
/// with 8-token prompts are prefilled (not timed), then `gen` decode steps over all of them
/// are timed; greedy sampling. One warm-up run, then `reps` timed ones. The batch sizes take
/// turns within each repetition, so that a drift of the machine's speed during the sitting
/// weighs on all of them alike (one engine at a time: the memory of the largest).
pub fn rows(
    model: &Model,
    batches: &[usize],
    gen: usize,
    reps: usize,
    tokens: &dyn Fn(usize) -> Vec<u32>,
    stats: fn(&[f64]) -> (f64, f64),
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let mut rates = vec![Vec::new(); batches.len()];
    for rep in 0..=reps {
        for (&b, rates) in batches.iter().zip(&mut rates) {
            let rate = run(&mut Engine::new(model, b)?, model, b, gen, tokens)?;
            if rep > 0 {
                rates.push(rate); // rep 0 is the warm-up
            }
            tick();
        }
    }
    Ok(batches
        .iter()
        .zip(&rates)
        .map(|(b, r)| {
            let (mean, sd) = stats(r);
            (format!("tg{gen} batch {b}"), mean, sd)
        })
        .collect())
}

/// Adds `b` greedy sequences of `max_tokens` with 8-token prompts that differ in their first
/// token (so that the sequences differ), and runs the step that prefills them.
fn start(
    engine: &mut Engine<'_>,
    model: &Model,
    b: usize,
    max_tokens: usize,
    tokens: &dyn Fn(usize) -> Vec<u32>,
) -> anyhow::Result<()> {
    let n_ctx = model.config().n_ctx;
    let vocab = model.config().vocab_size as u32;
    for s in 0..b {
        let mut prompt = tokens(8.min(n_ctx - 1));
        prompt[0] = (prompt[0] + 97 * s as u32) % vocab;
        engine.add(
            &prompt,
            SequenceParams::new(SamplerConfig::greedy(), max_tokens),
        )?;
    }
    engine.step()?; // the prefills and first tokens
    Ok(())
}

/// One timed run: `b` sequences added and prefilled, then `gen` decode steps over all of them
/// (tokens per second of all the sequences), then the sequences run out.
fn run(
    engine: &mut Engine<'_>,
    model: &Model,
    b: usize,
    gen: usize,
    tokens: &dyn Fn(usize) -> Vec<u32>,
) -> anyhow::Result<f64> {
    start(engine, model, b, gen + 1, tokens)?;
    let t0 = Instant::now();
    let mut n = 0;
    for _ in 0..gen {
        n += engine.step()?.iter().filter(|o| o.token.is_some()).count();
    }
    let wall = t0.elapsed().as_secs_f64();
    while !engine.is_empty() {
        engine.step()?;
    }
    Ok(n as f64 / wall)
}

/// Per-kernel GPU time per token of batched decode steps, for each batch size above 1 (the
/// batch of one is the session's decode profile): B sequences with 8-token prompts, then 8
/// decode steps over all of them timed dispatch by dispatch.
pub fn profile(
    model: &Model,
    batches: &[usize],
    tokens: &dyn Fn(usize) -> Vec<u32>,
) -> anyhow::Result<ProfileRows> {
    const STEPS: usize = 8;
    let mut out = Vec::new();
    for &b in batches.iter().filter(|&&b| b > 1) {
        let mut engine = Engine::new(model, b)?;
        engine.enable_profiling()?;
        start(&mut engine, model, b, STEPS + 1, tokens)?;
        engine.take_profile();
        for _ in 0..STEPS {
            engine.step()?;
        }
        let times = engine.take_profile();
        out.push((
            format!("decode batch {b}"),
            summarize(times, (STEPS * b) as f64),
        ));
    }
    Ok(out)
}
