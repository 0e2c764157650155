//! Stop reasons and the library's generation API on small synthetic models.

use wgpt::{gpu::test_gpu, KernelFamily, LoadOptions, Model, SamplerConfig, StopReason};

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
        let want = wgpt::sampler::argmax(&a.forward(&input).unwrap());
        let got = match i {
            0 | 6 => b.forward_argmax(&input).unwrap(),
            3 | 9 => wgpt::sampler::argmax(&b.forward(&input).unwrap()),
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
    let want = wgpt::sampler::argmax(&a.forward(&[5]).unwrap());
    assert_eq!(b.decode_argmax(5, true).unwrap(), want);
}
