//! `wgpt bench`: llama-bench-style prefill (pp) and decode (tg) speed, mean ± sd over reps.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use wgpt::{Config, Model, WeightDtype};

use super::{count_at_least, progress_bar, DeviceArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Benchmark a model with the real shapes of a known checkpoint and seeded random weights.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(wgpt::presets()), conflicts_with = "model")]
    synthetic: Option<String>,
    /// Prompt lengths to time one prefill of, comma-separated.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "128",
        allow_negative_numbers = true,
        value_parser = count_at_least::<1>
    )]
    prompts: Vec<usize>,
    /// Decode steps to time (after a short prompt); 0 to skip.
    #[arg(short = 'n', long = "n-gen", default_value_t = 64, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    gen: usize,
    /// Repetitions of each test (≥ 1).
    #[arg(short = 'r', long, default_value_t = 3, allow_negative_numbers = true,
          value_parser = count_at_least::<1>)]
    reps: usize,
    /// Decode (and profile) at this depth: the cache's first D positions count as filled
    /// (llama-bench's `-d`, without computing them: a decode step costs the same whatever
    /// they hold). Needs a context above D + 8 + the decode steps (`--ctx`).
    #[arg(short = 'd', long = "n-depth", default_value_t = 0, allow_negative_numbers = true,
          value_parser = count_at_least::<0>)]
    depth: usize,
    /// Batch sizes to time aggregate decode (-n steps) over, comma-separated: B sequences
    /// decoded together by the batched engine, as `serve` runs them (tokens/s of all B).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true,
          value_parser = count_at_least::<1>)]
    batch: Vec<usize>,
    /// Print one JSON object with a `results` list (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Also report GPU time per kernel per token (timestamp queries), for decode and prefill
    /// (and batched decode with --batch).
    #[arg(long)]
    profile: bool,
}

struct Row {
    test: String,
    kind: &'static str,
    mean: f64,
    sd: f64,
}

fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let files = a.model.open()?;
    let gpu = a.device.gpu()?;
    let model = match &a.synthetic {
        Some(name) => {
            let cfg = Config::preset(name).ok_or_else(|| {
                wgpt::Error::InvalidInput(format!(
                    "unknown preset `{name}`; known: {}",
                    wgpt::presets().join(", ")
                ))
            })?;
            let dtype = a.model.dtype.unwrap_or(WeightDtype::F16);
            let bar = progress_bar(a.json, "loading", "{msg} [{bar:30}] {bytes}/{total_bytes}");
            let model = Model::synthetic(cfg, 1234, &gpu, &a.model.load_options(Some(dtype), &bar));
            bar.finish_and_clear();
            model?
        }
        None => a.model.load(files, &gpu, a.json)?,
    };
    let cfg = model.config().clone();
    let n_ctx = cfg.n_ctx;
    let vocab = cfg.vocab_size as u32;
    let tokens =
        |n: usize| -> Vec<u32> { (0..n as u32).map(|i| (i * 7919 + 13) % vocab).collect() };
    let mut session = model.session()?;
    let mut rows = Vec::new();
    // Progress over the timed runs (and their warm-ups).
    let runs =
        (a.prompts.len() + a.batch.len()) * (a.reps + 1) + if a.gen > 0 { a.reps + 1 } else { 0 };
    let bar = progress_bar(a.json, "benchmarking", "{msg} [{bar:30}] {pos}/{len} runs");
    bar.set_length(runs as u64);
    for &p in &a.prompts {
        if p > n_ctx {
            return Err(wgpt::Error::InvalidInput(format!(
                "prompt length {p} is outside 1..={n_ctx}"
            ))
            .into());
        }
        let toks = tokens(p);
        session.reset();
        session.forward(&toks)?; // warm-up
        bar.inc(1);
        let mut rates = Vec::new();
        for _ in 0..a.reps {
            session.reset();
            let t0 = Instant::now();
            session.forward(&toks)?;
            rates.push(p as f64 / t0.elapsed().as_secs_f64());
            bar.inc(1);
        }
        let (mean, sd) = stats(&rates);
        rows.push(Row {
            test: format!("pp{p}"),
            kind: "prefill_tokens_per_s",
            mean,
            sd,
        });
    }
    // Host time of the timed decode steps, and their wall time (for --profile).
    let mut decode_host = wgpt::HostTimes::default();
    let mut decode_wall = std::time::Duration::ZERO;
    if a.gen > 0 {
        let prompt = tokens(8.min(n_ctx - 1));
        if a.depth + prompt.len() + a.gen > n_ctx {
            return Err(wgpt::Error::InvalidInput(format!(
                "-n {} does not fit the context of {n_ctx} after the prompt (and -d {})",
                a.gen, a.depth
            ))
            .into());
        }
        let mut rates = Vec::new();
        for rep in 0..=a.reps {
            session.reset();
            session.assume_filled(a.depth)?;
            session.forward(&prompt)?;
            session.take_host_times();
            let t0 = Instant::now();
            let mut next = prompt[prompt.len() - 1];
            for i in 0..a.gen {
                // Greedy, as `generate --temperature 0`: each step queued before the host
                // reads the one before.
                next = session.decode_argmax(next, i + 1 < a.gen)?;
            }
            if rep > 0 {
                let wall = t0.elapsed();
                rates.push(a.gen as f64 / wall.as_secs_f64()); // rep 0 is the warm-up
                decode_host += session.take_host_times();
                decode_wall += wall;
            }
            bar.inc(1);
        }
        let (mean, sd) = stats(&rates);
        rows.push(Row {
            test: match a.depth {
                0 => format!("tg{}", a.gen),
                d => format!("tg{} @ d{d}", a.gen),
            },
            kind: "decode_tokens_per_s",
            mean,
            sd,
        });
    }
    if a.gen > 0 && !a.batch.is_empty() {
        let rate = |b: &[usize]| {
            super::bench_batch::rows(&model, b, a.gen, a.reps, &tokens, stats, || bar.inc(1))
        };
        for (test, mean, sd) in rate(&a.batch)? {
            let kind = "decode_tokens_per_s";
            rows.push(Row {
                test,
                kind,
                mean,
                sd,
            });
        }
    }
    bar.finish_and_clear();
    let profile = if a.profile {
        let mut p = profile(&mut session, &a.prompts, a.depth, n_ctx, &tokens)?;
        if a.gen > 0 {
            p.extend(super::bench_batch::profile(&model, &a.batch, &tokens)?);
        }
        Some(p)
    } else {
        None
    };
    let info = model.info();
    let adapter = gpu.adapter();
    let name = a.synthetic.clone().unwrap_or_else(|| info.origin.clone());
    let mut out = std::io::stdout().lock();
    // µs per timed decode token: wall, encode and submit, wait until mapped, checks.
    let host_us = (a.profile && decode_host.steps > 0).then(|| {
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / decode_host.steps as f64;
        [
            per(decode_wall),
            per(decode_host.encode),
            per(decode_host.wait),
            per(decode_host.after),
        ]
    });
    // The storage formats of the weight matrices ("q4_k+q6_k" for a mixed GGUF file).
    let dtype = info.storage();
    let weights_mb = info.weight_bytes as f64 / 1e6;
    if a.json {
        let results: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "test": r.test, r.kind: r.mean, "stddev": r.sd, "reps": a.reps,
                    "dtype": dtype, "adapter": adapter.name,
                    "backend": adapter.backend, "kernels": info.kernels.name(),
                })
            })
            .collect();
        let mut obj = serde_json::json!({
            "model": name, "params": info.n_params, "dtype": dtype,
            "weight_bytes": info.weight_bytes,
            "adapter": adapter.name, "backend": adapter.backend,
            "kernels": info.kernels.name(), "results": results,
        });
        if let Some(p) = &profile {
            obj["profile"] = serde_json::json!(p
                .iter()
                .map(|(test, rows)| serde_json::json!({
                    "test": test,
                    "kernels": rows.iter().map(|(k, us, n)| serde_json::json!({"kernel": k, "us_per_token": us, "dispatches_per_token": n})).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>());
        }
        if let Some([wall, encode, wait, after]) = host_us {
            obj["decode_host_us_per_token"] = serde_json::json!({
                "wall": wall, "encode": encode, "wait": wait, "after": after,
                "steps": decode_host.steps, "queued": decode_host.queued,
            });
        }
        writeln!(out, "{obj}")?;
    } else {
        writeln!(
            out,
            "| model | params | dtype | weights | adapter | backend | kernels | test | tokens/s |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
        for r in &rows {
            writeln!(
                out,
                "| {name} | {:.1} M | {dtype} | {weights_mb:.1} MB | {} | {} | {} | {} | {:.2} ± {:.2} |",
                info.n_params as f64 / 1e6,
                adapter.name,
                adapter.backend,
                info.kernels,
                r.test,
                r.mean,
                r.sd
            )?;
        }
        for (test, rows) in profile.iter().flatten() {
            let total: f64 = rows.iter().map(|r| r.1).sum();
            writeln!(out, "\nGPU time per token, {test} ({total:.0} µs in all):\n| kernel | µs/token | dispatches/token | share |\n|---|---|---|---|")?;
            for (k, us, n) in rows {
                writeln!(
                    out,
                    "| {k} | {us:.1} | {n:.1} | {:.1}% |",
                    100.0 * us / total
                )?;
            }
        }
        if let Some([wall, encode, wait, after]) = host_us {
            writeln!(
                out,
                "\nHost time per decode token (timed runs, without timestamp queries): wall {wall:.0} µs = \
                 encode and submit {encode:.0} + wait until the result is mapped {wait:.0} + checks {after:.0} + the rest {:.0}; \
                 {} of {} steps were queued ahead by the step before",
                wall - encode - wait - after,
                decode_host.queued,
                decode_host.steps
            )?;
        }
    }
    Ok(())
}

/// Per-kernel GPU time per token: (test, [(kernel, µs per token, dispatches per token)]).
pub(super) type ProfileRows = Vec<(String, Vec<(String, f64, f64)>)>;

/// (kernel, µs per token, dispatches per token) from timed dispatches over `per` tokens, the
/// slowest kernel first.
pub(super) fn summarize(times: Vec<(String, f64)>, per: f64) -> Vec<(String, f64, f64)> {
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (name, ns) in times {
        match rows.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1 += ns / 1e3 / per;
                r.2 += 1.0 / per;
            }
            None => rows.push((name, ns / 1e3 / per, 1.0 / per)),
        }
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows
}

fn profile(
    session: &mut wgpt::Session<'_>,
    prompts: &[usize],
    depth: usize,
    n_ctx: usize,
    tokens: &dyn Fn(usize) -> Vec<u32>,
) -> anyhow::Result<ProfileRows> {
    if !session.enable_profiling()? {
        return Err(wgpt::Error::Gpu {
            message: "this adapter has no timestamp queries (TIMESTAMP_QUERY)".into(),
            source: None,
        }
        .into());
    }
    let mut out = Vec::new();
    // Decode: 16 steps after an 8-token prompt (at the depth).
    let steps = 16.min(n_ctx.saturating_sub(depth + 9));
    session.reset();
    session.assume_filled(depth)?;
    session.forward(&tokens(8))?;
    session.take_profile();
    for i in 0..steps {
        session.forward_argmax(&[(i * 31 % 50) as u32])?;
    }
    out.push((
        match depth {
            0 => "decode".to_string(),
            d => format!("decode @ d{d}"),
        },
        summarize(session.take_profile(), steps as f64),
    ));
    if let Some(&p) = prompts.first() {
        session.reset();
        session.forward(&tokens(p))?;
        out.push((
            format!("prefill pp{p}"),
            summarize(session.take_profile(), p as f64),
        ));
    }
    Ok(out)
}
