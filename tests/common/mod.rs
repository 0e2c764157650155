//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The reference values `tools/make_fixtures.py` computed with HF transformers (float64).
pub struct Reference {
    pub prompt_ids: Vec<u32>,
    pub logits: Vec<Vec<f64>>,
    pub greedy_prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub greedy_margins: Vec<f64>,
    pub ppl_context: usize,
    pub ppl_tokens_scored: usize,
    pub ppl_nll_mean: f64,
    pub ppl_bits_per_byte: f64,
    pub ppl_chunks2_nll_mean: f64,
    pub ppl_chunks2_tokens_scored: usize,
}

pub fn reference(model: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(model).join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<_>>()
    };
    let floats = |x: &serde_json::Value| {
        x.as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    Reference {
        prompt_ids: ids("prompt_ids"),
        logits: v["logits"].as_array().unwrap().iter().map(floats).collect(),
        greedy_prompt_ids: ids("greedy_prompt_ids"),
        greedy_ids: ids("greedy_ids"),
        greedy_margins: floats(&v["greedy_margins"]),
        ppl_context: v["ppl_context"].as_u64().unwrap() as usize,
        ppl_tokens_scored: v["ppl_tokens_scored"].as_u64().unwrap() as usize,
        ppl_nll_mean: v["ppl_nll_mean"].as_f64().unwrap(),
        ppl_bits_per_byte: v["ppl_bits_per_byte"].as_f64().unwrap(),
        ppl_chunks2_nll_mean: v["ppl_chunks2_nll_mean"].as_f64().unwrap(),
        ppl_chunks2_tokens_scored: v["ppl_chunks2_tokens_scored"].as_u64().unwrap() as usize,
    }
}

/// max |got − want| / max(1, max |want|): the logit error relative to the logits' magnitude.
pub fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// A small synthetic model config (32 wide, 2 layers, 16 positions, 50 tokens).
pub fn tiny_config(eos_token_id: Option<u32>) -> wgpt::Config {
    wgpt::Config {
        family: wgpt::Family::Gpt2,
        n_embd: 32,
        n_layer: 2,
        n_head: 2,
        n_positions: 16,
        n_inner: 40,
        vocab_size: 50,
        layer_norm_epsilon: 1e-5,
        activation: wgpt::Activation::GeluTanh,
        tie_word_embeddings: true,
        eos_token_ids: eos_token_id.into_iter().collect(),
        scale_attn_weights: true,
    }
}
