//! The batched engine: a sequence's ids are the same alone or beside others (greedy, and
//! sampled with its seed), in both kernel families, with learned positions (GPT-2, OPT-350m's
//! projected embedding) and rotary ones with grouped-query attention (Llama); continuous
//! batching (sequences joining and leaving between steps); slots freed by finishing and by
//! cancelling; bad input refused.

use std::collections::HashMap;

use common::test_gpu;
use wgpt::SequenceOutput;
use wgpt::{Engine, Gpu, KernelFamily, KvDtype, LoadOptions, Model};
use wgpt::{SamplerConfig, SequenceId, SequenceParams, StopReason};

mod common;

use common::fixture;

/// Runs `jobs` (prompt, params, the step before which it is added) through an engine with
/// `max_batch` slots; returns each job's ids and stop reason, and the largest batch decoded.
fn run(
    engine: &mut Engine,
    jobs: &[(Vec<u32>, SequenceParams, usize)],
) -> (Vec<(Vec<u32>, StopReason)>, usize) {
    assert!(engine.is_empty());
    let mut ids: HashMap<SequenceId, usize> = HashMap::new();
    let mut out: Vec<(Vec<u32>, Option<StopReason>)> = vec![(Vec::new(), None); jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    let mut widest = 0;
    for step in 0..10_000 {
        pending.retain(|&j| {
            if jobs[j].2 <= step && engine.has_free_slot() {
                let id = engine.add(&jobs[j].0, jobs[j].1.clone()).unwrap();
                ids.insert(id, j);
                false
            } else {
                true
            }
        });
        if engine.is_empty() && pending.is_empty() {
            break;
        }
        widest = widest.max(engine.active());
        for SequenceOutput {
            id, token, finish, ..
        } in engine.step().unwrap()
        {
            let j = ids[&id];
            out[j].0.extend(token);
            if let Some(r) = finish {
                assert!(!engine.contains(id), "a finished sequence leaves its slot");
                out[j].1 = Some(r);
            }
        }
    }
    let out = out.into_iter().map(|(i, r)| (i, r.unwrap())).collect();
    (out, widest)
}

fn greedy(n: usize) -> SequenceParams {
    SequenceParams::new(SamplerConfig::greedy(), n)
}

/// Prompts of different lengths from the model's vocabulary.
fn prompts(vocab: usize, count: usize) -> Vec<Vec<u32>> {
    (0..count)
        .map(|i| {
            (0..1 + (i * 5) % 11)
                .map(|j| ((i * 131 + j * 17 + 3) % vocab) as u32)
                .collect()
        })
        .collect()
}

/// Each job alone, then all of them with `max_batch` slots, joining at different steps:
/// the same ids and stop reasons.
fn assert_batching_invariant(
    engine: &mut Engine,
    jobs: &[(Vec<u32>, SequenceParams, usize)],
    what: &str,
) {
    let solo: Vec<_> = jobs
        .iter()
        .map(|(p, s, _)| run(engine, &[(p.clone(), s.clone(), 0)]).0.remove(0))
        .collect();
    let (batched, widest) = run(engine, jobs);
    assert!(widest >= 4, "{what}: only {widest} sequences ran together");
    for (j, (a, b)) in solo.iter().zip(&batched).enumerate() {
        assert_eq!(a, b, "{what}: job {j} alone vs batched");
        assert!(!a.0.is_empty(), "{what}: job {j} generated nothing");
    }
}

fn load(gpu: &Gpu, dir: Option<&str>, family: KernelFamily) -> Model {
    let opts = LoadOptions::default().with_kernels(family);
    match dir {
        None => Model::load_default(gpu, &opts).unwrap(),
        Some(d) => Model::load(fixture(d), gpu, &opts).unwrap(),
    }
}

#[test]
fn greedy_ids_are_the_same_alone_or_batched() {
    let Some(gpu) = test_gpu() else { return };
    // The cooperative family's batch kernels are slow on lavapipe: it runs on the fixtures
    // (`fixture_models_batch_the_same_in_both_kernel_families`,
    // `the_cooperative_engine_gives_the_sessions_and_hfs_ids`).
    let model = load(&gpu, None, KernelFamily::BarrierFree);
    let v = model.config().vocab_size;
    let mut engine = Engine::new(&model, 6).unwrap();
    // Eight sequences, 6 slots: two wait for a slot; some join while others decode.
    let jobs: Vec<_> = prompts(v, 8)
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, greedy(8 + 3 * (i % 3)), [0, 0, 0, 1, 2, 2, 5, 0][i]))
        .collect();
    assert_batching_invariant(&mut engine, &jobs, "default model barrier-free");
    // The engine's ids are the session's (greedy generation): the barrier-free one-row
    // kernels sum in the batch kernels' order.
    let mut session = model.session().unwrap();
    for (p, params, _) in &jobs[..3] {
        let want: Vec<u32> = session
            .generate_ids(p, SamplerConfig::greedy(), params.max_tokens)
            .unwrap()
            .map(|t| t.unwrap().id)
            .collect();
        let got = run(&mut engine, &[(p.clone(), params.clone(), 0)])
            .0
            .remove(0);
        assert_eq!(got.0, want, "engine vs session");
    }
}

#[test]
fn the_cooperative_engine_gives_the_sessions_and_hfs_ids() {
    // The engine GPUs run under `serve` (cooperative kernels, batched rows) against the
    // session's greedy ids and HF's (float64 references), up to the first token whose
    // reference top-2 margin is 1e-3 or less (a near-tie the two summation orders may break
    // differently); with an f32 KV cache, as the golden tests.
    let Some(gpu) = test_gpu() else { return };
    for dir in [
        "tiny-hf-f16",
        "tiny-llama-gqa-f16",
        "tiny-opt350-bf16",
        "tiny-llama32-bf16",
    ] {
        let r = common::reference(dir);
        let opts = LoadOptions::default()
            .with_kernels(KernelFamily::Cooperative)
            .with_kv(wgpt::KvDtype::F32);
        let model = Model::load(fixture(dir), &gpu, &opts).unwrap();
        let eos = model.config().eos_token_ids.clone();
        let n = r.greedy_ids.len();
        let sure = r
            .greedy_margins
            .iter()
            .zip(&r.greedy_ids)
            .take_while(|&(&m, id)| m > 1e-3 && !eos.contains(id))
            .count();
        assert!(sure >= 4, "{dir}: only {sure} tokens with a clear margin");
        let mut session = model.session().unwrap();
        let from_session: Vec<u32> = session
            .generate_ids(&r.greedy_prompt_ids, SamplerConfig::greedy(), n)
            .unwrap()
            .map(|t| t.unwrap().id)
            .collect();
        let mut engine = Engine::new(&model, 4).unwrap();
        // Alone, and beside three other sequences that join at different steps.
        let others = prompts(model.config().vocab_size, 3);
        let mut jobs = vec![(r.greedy_prompt_ids.clone(), greedy(n), 0)];
        jobs.extend(
            others
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, greedy(6), i)),
        );
        for jobs in [&jobs[..1], &jobs[..]] {
            let (out, _) = run(&mut engine, jobs);
            let got = &out[0].0;
            assert_eq!(got[..sure], r.greedy_ids[..sure], "{dir}: engine vs HF");
            assert_eq!(
                got[..sure],
                from_session[..sure],
                "{dir}: engine vs session"
            );
        }
    }
}

#[test]
fn fixture_models_batch_the_same_in_both_kernel_families() {
    let Some(gpu) = test_gpu() else { return };
    // GPT-2 (learned positions in the embedding), Llama (rotary, grouped-query attention),
    // OPT-350m (positions added after project_in).
    for dir in ["tiny-hf-f16", "tiny-llama-gqa-f16", "tiny-opt350-bf16"] {
        for family in KernelFamily::ALL {
            let model = load(&gpu, Some(dir), family);
            let v = model.config().vocab_size;
            let mut engine = Engine::new(&model, 4).unwrap();
            let jobs: Vec<_> = prompts(v, 5)
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, greedy(8), i / 3))
                .collect();
            assert_batching_invariant(&mut engine, &jobs, &format!("{dir} {family}"));
        }
    }
}

#[test]
fn sampled_sequences_are_reproducible_from_their_seed() {
    let Some(gpu) = test_gpu() else { return };
    let model = load(&gpu, None, KernelFamily::BarrierFree);
    let v = model.config().vocab_size;
    let mut engine = Engine::new(&model, 4).unwrap();
    let jobs: Vec<_> = prompts(v, 5)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let s = SamplerConfig::default()
                .with_seed(100 + i as u64 % 3)
                .with_repeat_penalty(1.1);
            (p, SequenceParams::new(s, 12), 0)
        })
        .collect();
    assert_batching_invariant(&mut engine, &jobs, "sampled");
    // Two different seeds give two different texts (for the same prompt).
    let p = jobs[0].0.clone();
    let a = SequenceParams::new(SamplerConfig::default().with_seed(1), 16);
    let b = SequenceParams::new(SamplerConfig::default().with_seed(2), 16);
    let (out, _) = run(&mut engine, &[(p.clone(), a, 0), (p, b, 0)]);
    assert_ne!(out[0].0, out[1].0);
}

#[test]
fn slots_free_on_finish_and_cancel_and_bad_input_is_refused() {
    let Some(gpu) = test_gpu() else { return };
    // 16 positions, 50 tokens, no eos token.
    let opts = LoadOptions::default().with_kernels(KernelFamily::BarrierFree);
    let model = Model::synthetic(common::tiny_config(None), 1, &gpu, &opts).unwrap();
    let n_ctx = model.config().n_positions;
    let mut e = Engine::new(&model, 2).unwrap();
    assert!(Engine::new(&model, 0).is_err());
    assert!(Engine::new(&model, Engine::MAX_BATCH + 1).is_err());
    let err = |r: wgpt::Result<SequenceId>| r.unwrap_err().to_string();
    assert!(err(e.add(&[], greedy(4))).contains("empty"));
    assert!(err(e.add(&vec![1; n_ctx + 1], greedy(4))).contains("context"));
    assert!(err(e.add(&[u32::MAX], greedy(4))).contains("vocabulary"));
    assert!(err(e.add(&[1], greedy(0))).contains("at least one"));
    let biased = SamplerConfig::greedy().with_logit_bias(vec![(50, 1.0)]);
    assert!(err(e.add(&[1], SequenceParams::new(biased, 4))).contains("vocabulary"));
    let a = e.add(&[1, 2, 3], greedy(100)).unwrap();
    let b = e.add(&[4], greedy(2)).unwrap();
    assert!(err(e.add(&[5], greedy(4))).contains("slots"));
    // b: first token from its prefill, the second ends it at max_tokens.
    e.step().unwrap();
    let outs = e.step().unwrap();
    let ended: Vec<_> = outs.iter().filter(|o| o.finish.is_some()).collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].id, b);
    assert_eq!(ended[0].finish, Some(StopReason::MaxTokens));
    assert!(e.has_free_slot());
    let c = e.add(&[5, 6], greedy(1000)).unwrap();
    assert!(e.cancel(a));
    assert!(!e.cancel(a));
    assert_eq!(e.active(), 1);
    // c runs on, alone, until the context is full.
    let mut n = 0;
    while e.contains(c) && n < n_ctx + 5 {
        for o in e.step().unwrap() {
            assert_eq!(o.id, c);
            if let Some(r) = o.finish {
                assert_eq!(r, StopReason::Context);
            }
        }
        n += 1;
    }
    assert!(e.is_empty());
    // 2 prompt tokens and n_ctx - 2 fed back: n_ctx - 1 generated, as a session.
    assert_eq!(n, n_ctx - 1);
}

/// Runs `prompt` alone with `params` and returns its tokens and the prompt tokens the prefix
/// cache served.
fn solo(engine: &mut Engine, prompt: &[u32], params: SequenceParams) -> (Vec<u32>, usize) {
    assert!(engine.is_empty());
    let id = engine.add(prompt, params).unwrap();
    let cached = engine.cached_tokens(id).unwrap();
    let mut ids = Vec::new();
    while engine.contains(id) {
        for o in engine.step().unwrap() {
            ids.extend(o.token);
        }
    }
    (ids, cached)
}

/// The prefix cache: a prompt that starts with an earlier sequence's tokens (its prompt, or
/// its prompt and answer as a chat's next turn does) prefills only the rest, and gives the
/// same ids, greedy and seeded, as without the cache. With sliding-window layers (Gemma 3,
/// window 8, rings of 8 + 127 rows) a kept sequence that ran far past the shared prefix has
/// overwritten keys the prefix needs, and is not reused.
#[test]
fn the_prefix_cache_serves_shared_prefixes_with_the_same_results() {
    let Some(gpu) = test_gpu() else { return };
    for (name, family) in [
        (None, KernelFamily::BarrierFree),
        (Some("tiny-gemma3-bf16"), KernelFamily::BarrierFree),
        (Some("tiny-llama32-bf16"), KernelFamily::Cooperative),
    ] {
        let model = load(&gpu, name, family);
        let what = name.unwrap_or("default model");
        let v = model.config().vocab_size as u32;
        let doc: Vec<u32> = (0..150).map(|i| (i * 7 + 3) % v).collect();
        let ask = |q: u32| [doc.clone(), vec![q % v, (q * 5 + 1) % v]].concat();
        let seeded = SequenceParams::new(SamplerConfig::default().with_seed(5), 6);
        for params in [greedy(6), seeded] {
            let mut cold = Engine::new(&model, 2).unwrap();
            cold.set_prefix_cache(false);
            let mut warm = Engine::new(&model, 2).unwrap();
            let (first, cached) = solo(&mut warm, &ask(1), params.clone());
            assert_eq!(cached, 0, "{what}: nothing cached yet");
            assert_eq!(first, solo(&mut cold, &ask(1), params.clone()).0, "{what}");
            // A second question about the same document: the document comes from the cache.
            let (second, cached) = solo(&mut warm, &ask(2), params.clone());
            assert_eq!(cached, doc.len(), "{what}");
            assert_eq!(second, solo(&mut cold, &ask(2), params.clone()).0, "{what}");
            // The next turn of the first conversation: its prompt and answer are cached.
            let turn = [ask(1), first.clone(), vec![4, 5]].concat();
            let (third, cached) = solo(&mut warm, &turn, params.clone());
            assert_eq!(cached, ask(1).len() + first.len() - 1, "{what}");
            assert_eq!(third, solo(&mut cold, &turn, params.clone()).0, "{what}");
            assert_eq!(
                solo(&mut cold, &turn, params.clone()).1,
                0,
                "{what}: cache off"
            );
            // A long answer, then its prompt again: the rings no longer hold the keys before
            // the prompt's last token, so the windowed model prefills it whole.
            let mut one = Engine::new(&model, 1).unwrap();
            solo(
                &mut one,
                &ask(3),
                SequenceParams::new(SamplerConfig::greedy(), 140),
            );
            let (again, cached) = solo(&mut one, &ask(3), params.clone());
            let windowed = model.config().windows.iter().any(Option::is_some);
            assert_eq!(windowed, name == Some("tiny-gemma3-bf16"));
            let want = if windowed { 0 } else { ask(3).len() - 1 };
            assert_eq!(again, solo(&mut cold, &ask(3), params.clone()).0, "{what}");
            assert_eq!(cached, want, "{what}: after a long answer");
        }
    }
}

/// Log-probabilities are the log-softmax of the model's logits (before any sampling
/// adjustment): HF's float64 logits of each fixture's prompt give the first token's
/// log-probability and its top 5 within 2e-3, with penalties and a temperature that change
/// the draw but not what is reported.
#[test]
fn logprobs_are_hfs_log_softmax() {
    let Some(gpu) = test_gpu() else { return };
    for name in [
        "tiny-llama32-bf16",
        "tiny-gemma2-f32",
        "tiny-qwen3-bf16",
        "tiny-orig-f32",
    ] {
        let opts = LoadOptions::default()
            .with_kernels(KernelFamily::BarrierFree)
            .with_kv(KvDtype::F32);
        let model = Model::load(fixture(name), &gpu, &opts).unwrap();
        let r = common::reference(name);
        let want = r.logits.last().unwrap();
        let max = want.iter().cloned().fold(f64::MIN, f64::max);
        let log_z = max + want.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        let mut engine = Engine::new(&model, 1).unwrap();
        let sampler = SamplerConfig::default()
            .with_temperature(1.7)
            .with_repeat_penalty(1.3)
            .with_penalties(0.5, 0.5);
        let id = engine
            .add(
                &r.prompt_ids,
                SequenceParams::new(sampler, 1).with_logprobs(5),
            )
            .unwrap();
        let out = engine.step().unwrap().remove(0);
        assert_eq!(out.id, id);
        let (token, lp) = (out.token.unwrap(), out.logprobs.unwrap());
        let hf = |t: u32| want[t as usize] - log_z;
        assert!((lp.logprob as f64 - hf(token)).abs() < 2e-3, "{name}");
        assert_eq!(lp.top.len(), 5);
        let mut order: Vec<u32> = (0..want.len() as u32).collect();
        order.sort_by(|a, b| want[*b as usize].total_cmp(&want[*a as usize]));
        for (k, &(t, l)) in lp.top.iter().enumerate() {
            assert!((l as f64 - hf(t)).abs() < 2e-3, "{name}: top {k}");
            // The same tokens as HF's top 5, where HF's logits are not within the tolerance.
            if (want[order[k] as usize] - want[t as usize]).abs() > 2e-3 {
                assert_eq!(t, order[k], "{name}: top {k}");
            }
        }
    }
}

/// A long prompt joining a running sequence is prefilled a chunk (128 tokens) per step: the
/// running sequence gets a token at every step meanwhile, and both get the ids they get alone.
#[test]
fn a_long_prompt_is_prefilled_in_chunks_between_decode_steps() {
    let Some(gpu) = test_gpu() else { return };
    let model = load(&gpu, Some("tiny-llama32-bf16"), KernelFamily::BarrierFree);
    let v = model.config().vocab_size as u32;
    let short: Vec<u32> = vec![5, 17, 3];
    let long: Vec<u32> = (0..300).map(|i| (i * 11 + 7) % v).collect();
    let mut engine = Engine::new(&model, 2).unwrap();
    engine.set_prefix_cache(false);
    let want_short = solo(&mut engine, &short, greedy(12)).0;
    let want_long = solo(&mut engine, &long, greedy(4)).0;
    let a = engine.add(&short, greedy(12)).unwrap();
    let mut got: HashMap<SequenceId, Vec<u32>> = HashMap::new();
    let mut step = |engine: &mut Engine| {
        let outs = engine.step().unwrap();
        for o in &outs {
            got.entry(o.id).or_default().extend(o.token);
        }
        outs.iter().map(|o| o.id).collect::<Vec<_>>()
    };
    step(&mut engine);
    step(&mut engine);
    let b = engine.add(&long, greedy(4)).unwrap();
    // 300 tokens: chunks of 128, 128 and 44; b's first token comes with the third.
    for i in 0..3 {
        let ids = step(&mut engine);
        assert!(ids.contains(&a), "step {i}: the running sequence waited");
        assert_eq!(ids.contains(&b), i == 2, "step {i}");
    }
    while !engine.is_empty() {
        step(&mut engine);
    }
    assert_eq!(got[&a], want_short);
    assert_eq!(got[&b], want_long);
}

/// A sequence whose logits are not finite (here: a prompt with a token whose embedding row
/// is +∞) ends alone with `StopReason::Error` and its reason; the sequence beside it runs on
/// and gets the ids it gets alone.
#[test]
fn a_failing_sequence_ends_alone() {
    let Some(gpu) = test_gpu() else { return };
    let dir = common::copy_fixture("tiny-untied-bf16");
    common::poison_embedding_row(dir.path(), "transformer.wte.weight", 42);
    let opts = LoadOptions::default().with_kernels(KernelFamily::BarrierFree);
    let model = Model::load(dir.path(), &gpu, &opts).unwrap();
    let mut engine = Engine::new(&model, 2).unwrap();
    let good: Vec<u32> = vec![7, 8, 9];
    // It never draws the poisoned token itself.
    let params = SequenceParams::new(
        SamplerConfig::greedy().with_logit_bias(vec![(42, -100.0)]),
        10,
    );
    let want = solo(&mut engine, &good, params.clone()).0;
    assert!(want.len() > 3, "{want:?}");
    let a = engine.add(&good, params).unwrap();
    engine.step().unwrap();
    let b = engine.add(&[5, 42, 6], greedy(10)).unwrap();
    let mut ids = Vec::new();
    let mut failed = None;
    while !engine.is_empty() {
        for o in engine.step().unwrap() {
            if o.id == a {
                assert_ne!(o.finish, Some(StopReason::Error));
                ids.extend(o.token);
            } else {
                assert_eq!(o.id, b);
                assert_eq!(o.finish, Some(StopReason::Error));
                assert!(o.token.is_none());
                failed = o.error;
            }
        }
    }
    let failed = failed.expect("the poisoned sequence fails");
    assert!(
        failed.contains("non-finite logits at position 2"),
        "{failed}"
    );
    assert_eq!(ids, want[1..]);
}

/// The scheduler (what `wgpt serve` runs on its GPU thread): when the engine fails (here:
/// the device destroyed mid-generation), every request hears `Failed` and `run` returns the
/// error, so that whoever runs it stops instead of serving without an engine.
#[test]
fn an_engine_failure_fails_every_request_and_ends_the_scheduler() {
    use std::sync::mpsc::channel;
    use wgpt::scheduler::{Counters, Event, Job, Observer, Scheduler};
    struct Quiet;
    impl Observer for Quiet {
        fn first_token(&self, _: f64, _: usize, _: usize) {}
        fn next_token(&self, _: f64) {}
        fn finished(&self, _: usize) {}
    }
    let Some(gpu) = test_gpu() else { return };
    let model = load(&gpu, None, KernelFamily::BarrierFree);
    let engine = Engine::new(&model, 2).unwrap();
    let counters = Counters::default();
    let (jobs, queue) = channel();
    let mut events = Vec::new();
    for prompt in [vec![1, 2, 3], vec![4, 5]] {
        let (tx, rx) = channel();
        // No eos (token 0): both run until the device goes.
        let sampler = SamplerConfig::greedy().with_logit_bias(vec![(0, -100.0)]);
        let params = SequenceParams::new(sampler, 200);
        // The sender counts a request in; the scheduler counts it out when it is answered.
        counters
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let arrived = std::time::Instant::now();
        let reply = Box::new(tx);
        jobs.send(Job {
            prompt,
            params,
            n: 1,
            reply,
            arrived,
        })
        .unwrap();
        events.push(rx);
    }
    std::thread::scope(|s| {
        let counters = &counters;
        let run = s.spawn(move || Scheduler::new(engine, 4).run(&queue, counters, &Quiet));
        // Both run; a few tokens each, then the device goes.
        for rx in &events {
            let outputs = rx
                .iter()
                .filter(|e| matches!(e, Event::Output { .. }))
                .take(3)
                .count();
            assert_eq!(outputs, 3);
        }
        gpu.device().destroy();
        for rx in &events {
            let end = rx.iter().find(|e| !matches!(e, Event::Output { .. }));
            assert!(matches!(end, Some(Event::Failed { .. })), "{end:?}");
        }
        let result = run.join().unwrap();
        assert!(result.is_err_and(|e| e.is_device_error()));
    });
    assert_eq!(
        counters.in_flight.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    drop(jobs);
}

/// `Engine::enable_profiling` times every dispatch of its steps on the GPU (what
/// `wgpt bench --batch … --profile` prints): a decode step of two sequences reports one
/// matmul per linear layer and per LM head, one attention per layer, with their times.
#[test]
fn engine_profiling_times_every_dispatch_of_a_step() {
    let Some(gpu) = test_gpu() else { return };
    let model = load(&gpu, None, KernelFamily::BarrierFree);
    let mut engine = Engine::new(&model, 2).unwrap();
    // lavapipe and the GPUs the tests run on have timestamp queries.
    assert!(engine.enable_profiling().unwrap());
    for prompt in [[1, 2, 3], [4, 5, 6]] {
        engine
            .add(&prompt, SequenceParams::new(SamplerConfig::greedy(), 4))
            .unwrap();
    }
    engine.step().unwrap(); // the prefills
    assert!(!engine.take_profile().is_empty());
    let outs = engine.step().unwrap(); // one decode step of both
    assert_eq!(outs.len(), 2);
    let times = engine.take_profile();
    let count = |label: &str| times.iter().filter(|(l, _)| l == label).count();
    let layers = model.config().n_layer;
    for layer in ["c_attn", "attn_proj", "c_fc", "mlp_proj"] {
        assert_eq!(
            count(&format!("matmul {layer}")),
            layers,
            "{layer}: {times:?}"
        );
    }
    assert_eq!(count("matmul lm_head"), 1);
    assert_eq!(count("attention"), layers);
    assert!(times.iter().all(|(_, ns)| ns.is_finite() && *ns >= 0.0));
    assert!(times.iter().map(|t| t.1).sum::<f64>() > 0.0);
    assert!(engine.take_profile().is_empty());
}
