//! The built-in TinyShakespeare model agrees with Hugging Face transformers: perplexity of a
//! held-out slice within 1e-4 relative (reference from `tools/train_tinyshakespeare.py`).
#![cfg(feature = "default-model")]

mod common;

use common::test_gpu;
use wgpt::{LoadOptions, Model, SamplerConfig, StopReason};

#[test]
fn default_model_perplexity_matches_hf() {
    let Some(gpu) = test_gpu() else { return };
    let dir = common::fixture("default-model");
    let text = std::fs::read_to_string(dir.join("heldout_slice.txt")).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let model = Model::load_default(&gpu, &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let ids = tok.encode(&text).unwrap();
    let context = r["ppl_context"].as_u64().unwrap() as usize;
    assert_eq!(context, model.config().n_positions);
    let mut s = model.session().unwrap();
    let p = wgpt::perplexity(&mut s, &ids, context, None, |id| tok.token_bytes(id)).unwrap();
    assert_eq!(
        p.tokens_scored as u64,
        r["ppl_tokens_scored"].as_u64().unwrap()
    );
    let want = r["ppl_nll_mean"].as_f64().unwrap();
    assert!(
        (p.nll_mean - want).abs() / want < 1e-4,
        "nll {} vs HF {want}",
        p.nll_mean
    );
    let want_bpb = r["ppl_bits_per_byte"].as_f64().unwrap();
    assert!(
        (p.bits_per_byte - want_bpb).abs() / want_bpb < 1e-4,
        "bits/byte {} vs HF {want_bpb}",
        p.bits_per_byte
    );
}

#[test]
fn default_model_generates_text() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::load_default(&gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let mut g = s.generate("ROMEO:", SamplerConfig::default(), 40).unwrap();
    let text: String = g.by_ref().map(|t| t.unwrap().text).collect();
    assert!(matches!(
        g.stop_reason(),
        Some(StopReason::MaxTokens | StopReason::Eos)
    ));
    // A model trained on Shakespeare writes mostly letters and spaces.
    let letters = text
        .chars()
        .filter(|c| c.is_alphabetic() || c.is_whitespace())
        .count();
    assert!(
        text.len() > 20 && letters * 10 > text.chars().count() * 8,
        "{text:?}"
    );
}

/// A multi-turn caller feeds only the new turn: the continued generation equals one over the
/// whole conversation prefilled at once, and the repetition penalty sees the whole of it.
#[test]
fn continuing_a_conversation_equals_prefilling_it_whole() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::load_default(&gpu, &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let first = tok.encode("ROMEO:").unwrap();
    let second = tok.encode("\nJULIET:").unwrap();
    let ids = |g: wgpt::Generation<'_, '_>| -> Vec<u32> { g.map(|t| t.unwrap().id).collect() };
    for sampler in [
        SamplerConfig::greedy(),
        SamplerConfig::greedy().with_repeat_penalty(1.5),
        SamplerConfig::default().with_seed(11),
    ] {
        let mut s = model.session().unwrap();
        let turn1 = ids(s.generate("ROMEO:", sampler.clone(), 16).unwrap());
        assert_eq!(turn1.len(), 16);
        // The last generated token waits; the rest is in the cache.
        assert_eq!(s.position(), first.len() + 15);
        let g = s
            .generate_continue("\nJULIET:", sampler.clone(), 16)
            .unwrap();
        // Only the waiting token and the new turn are prefilled.
        assert_eq!(g.prompt_tokens(), 1 + second.len());
        let turn2 = ids(g);

        let whole: Vec<u32> = [&first[..], &turn1, &second].concat();
        let mut f = model.session().unwrap();
        let full = ids(f.generate_ids(&whole, sampler.clone(), 16).unwrap());
        assert_eq!(turn2, full, "{sampler:?}");
        assert_eq!(s.tokens(), f.tokens());
        // The cache built turn by turn holds what one prefill computes.
        let a = s.forward(&[7]).unwrap();
        let b = f.forward(&[7]).unwrap();
        let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(err <= 1e-4 * scale, "logits differ by {err}");
    }
}
