//! Stop reasons and the library's generation API on small synthetic models.

use common::test_gpu;
use wgpt::{KernelFamily, LoadOptions, Model, SamplerConfig, StopReason};

mod common;

use common::tiny_config as tiny;

#[test]
fn stops_when_the_context_is_full() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::synthetic(tiny(None), 1, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let mut g = s
        .generate_ids(&[1, 2, 3], SamplerConfig::default(), 1000)
        .unwrap();
    let n = g.by_ref().inspect(|t| assert!(t.is_ok())).count();
    assert_eq!(g.stop_reason(), Some(StopReason::Context));
    // 3 prompt tokens + 13 fed back = 16 positions; the 14th sampled token needs no position.
    assert_eq!(n, 14);
}

#[test]
fn stops_at_max_tokens_and_at_eos() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::synthetic(tiny(None), 2, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let mut g = s.generate_ids(&[4, 5], SamplerConfig::greedy(), 5).unwrap();
    let ids: Vec<u32> = g.by_ref().map(|t| t.unwrap().id).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(g.stop_reason(), Some(StopReason::MaxTokens));
    // Make the first greedy token the eos token: generation stops before emitting it.
    let first = ids[0];
    let model = Model::synthetic(tiny(Some(first)), 2, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let mut g = s.generate_ids(&[4, 5], SamplerConfig::greedy(), 5).unwrap();
    assert_eq!(g.by_ref().count(), 0);
    assert_eq!(g.stop_reason(), Some(StopReason::Eos));
}

#[test]
fn forward_rejects_bad_tokens_and_overflow() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::synthetic(tiny(None), 3, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    assert!(s.forward(&[]).is_err());
    assert!(s
        .forward(&[50])
        .unwrap_err()
        .to_string()
        .contains("outside the vocabulary"));
    assert!(s
        .forward(&[1; 17])
        .unwrap_err()
        .to_string()
        .contains("context"));
    // The session still works after errors.
    assert_eq!(s.forward(&[1, 2]).unwrap().len(), 50);
}

#[test]
fn greedy_steps_agree_with_the_logits_when_steps_mix_readouts() {
    let Some(gpu) = test_gpu() else { return };
    // The cooperative family takes the argmax on the GPU and queues steps ahead; the
    // barrier-free one reads the logits.
    for family in [KernelFamily::Cooperative, KernelFamily::BarrierFree] {
        let opts = LoadOptions::default().with_kernels(family);
        let model = Model::synthetic(tiny(None), 4, &gpu, &opts).unwrap();
        greedy_steps_agree_on(&model);
    }
}

fn greedy_steps_agree_on(model: &Model) {
    let (mut a, mut b) = (model.session().unwrap(), model.session().unwrap());
    // Session a reads full logits every step. Session b mixes synchronous GPU-argmax steps (0,
    // 6), full-logit steps (3, 9) and queued-ahead greedy steps (the rest), and feeds another
    // token than the one a queued step assumed after step 4: every step must still give a's
    // argmax. Steps 11 to 13 use the step queued before them, the last at n_ctx - 1.
    let mut input = vec![3u32, 9, 1];
    let n_ctx = 16;
    b.take_host_times();
    for i in 0..n_ctx - 2 {
        let want = wgpt::argmax(&a.forward(&input).unwrap());
        let got = match i {
            0 | 6 => b.forward_argmax(&input).unwrap(),
            3 | 9 => wgpt::argmax(&b.forward(&input).unwrap()),
            _ => b.decode_argmax(input[0], true).unwrap(), // queues the next step
        };
        let what = format!("step {i}, {}", model.info().kernels);
        assert_eq!(got, want, "{what}");
        assert_eq!(b.position(), a.position(), "{what}");
        input = vec![if i == 4 { (want + 7) % 50 } else { want }];
    }
    // Queued steps used: 2 (after 1), 8 (after 7), 11, 12, 13; none without GPU argmax.
    let queued = b.take_host_times().queued;
    let want_queued = if model.info().kernels == KernelFamily::Cooperative {
        5
    } else {
        0
    };
    assert_eq!(queued, want_queued, "{}", model.info().kernels);
    // The last step queued nothing past the context; the session is full, and usable after
    // a reset.
    assert_eq!(b.position(), n_ctx);
    assert!(b.decode_argmax(1, true).is_err());
    b.reset();
    a.reset();
    let want = wgpt::argmax(&a.forward(&[5]).unwrap());
    assert_eq!(b.decode_argmax(5, true).unwrap(), want);
}

#[test]
fn an_error_mid_generation_is_the_stop_reason() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::synthetic(tiny(None), 6, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let mut g = s
        .generate_ids(&[1, 2], SamplerConfig::default(), 10)
        .unwrap();
    assert!(g.next().unwrap().is_ok());
    assert!(g.next().unwrap().is_ok());
    gpu.device().destroy();
    assert!(matches!(g.next(), Some(Err(e)) if e.is_device_error()));
    assert_eq!(g.stop_reason(), Some(StopReason::Error));
    assert_eq!(StopReason::Error.as_str(), "error");
    assert!(g.next().is_none());
    assert_eq!(g.tokens().len(), 2);
}

#[test]
fn loading_and_perplexity_report_progress() {
    let Some(gpu) = test_gpu() else { return };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let opts = LoadOptions::default().with_progress(wgpt::Progress::new(move |done, total| {
        sink.lock().unwrap().push((done, total));
    }));
    let model = Model::synthetic(tiny(None), 7, &gpu, &opts).unwrap();
    let seen = seen.lock().unwrap().clone();
    let total = seen[0].1;
    assert!(total > 0);
    assert_eq!(seen[0], (0, total));
    assert_eq!(*seen.last().unwrap(), (total, total));
    // One report per uploaded tensor, in order.
    assert!(seen.len() > 10, "{seen:?}");
    assert!(seen
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 == w[1].1));

    let mut s = model.session().unwrap();
    let ids: Vec<u32> = (0..40).map(|i| i % 50).collect();
    let mut windows = Vec::new();
    wgpt::perplexity_with_progress(&mut s, &ids, 16, None, |_| 1, |d, t| windows.push((d, t)))
        .unwrap();
    assert_eq!(windows, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    windows.clear();
    wgpt::perplexity_with_progress(
        &mut s,
        &ids,
        16,
        Some(2),
        |_| 1,
        |d, t| windows.push((d, t)),
    )
    .unwrap();
    assert_eq!(windows, [(0, 2), (1, 2), (2, 2)]);
}

#[test]
fn continuing_needs_something_to_feed_and_room_for_it() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::synthetic(tiny(None), 8, &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let e = s
        .generate_ids_continue(&[], SamplerConfig::greedy(), 3)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "nothing to continue from: the prompt is empty and no generated token is waiting to be fed"
    );
    s.forward(&[1; 14]).unwrap();
    let e = s
        .generate_ids_continue(&[2, 3, 4], SamplerConfig::greedy(), 3)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "3 more tokens do not fit after the 14 in the cache: the context holds 16"
    );
    // A generation that stopped at max_tokens leaves its last token waiting: an empty prompt
    // continues from it, and the result is one longer generation.
    s.reset();
    let one: Vec<u32> = s
        .generate_ids(&[5, 6], SamplerConfig::greedy(), 6)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    s.reset();
    let mut split: Vec<u32> = s
        .generate_ids(&[5, 6], SamplerConfig::greedy(), 3)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    assert_eq!(
        s.position(),
        2 + 2,
        "the third token is not in the cache yet"
    );
    let mut more = s
        .generate_ids_continue(&[], SamplerConfig::greedy(), 3)
        .unwrap();
    split.extend(more.by_ref().map(|t| t.unwrap().id));
    assert_eq!(more.prompt_tokens(), 1);
    assert_eq!(split, one);
}
