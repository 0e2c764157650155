//! The built-in TinyShakespeare model agrees with Hugging Face transformers: perplexity of a
//! held-out slice within 1e-4 relative (reference from `tools/train_tinyshakespeare.py`).
#![cfg(feature = "default-model")]

mod common;

use wgpt::{gpu::test_gpu, LoadOptions, Model, SamplerConfig, StopReason};

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
