//! GPT-2-small shapes (768 wide, 12 layers, 12 heads, 50257 tokens, 1024 positions) with seeded
//! weights, stored f32: `wte` (154 MB) is split by vocabulary into textures of at most 64 MiB
//! (`LoadOptions::max_chunk_bytes`). Decoding over the KV cache must give the logits of a full
//! recompute.

mod common;

use common::test_gpu;
use wgpt::{Config, LoadOptions, Model, WeightDtype};

#[test]
fn decode_with_cache_equals_full_recompute() {
    let Some(gpu) = test_gpu() else { return };
    let cfg = Config::preset("gpt2").unwrap();
    let model = Model::synthetic(
        cfg,
        7,
        &gpu,
        &LoadOptions::default()
            .with_dtype(WeightDtype::F32)
            .with_max_chunk_bytes(64 << 20),
    )
    .unwrap();
    let max_dim = gpu.limits().max_texture_dimension_2d as usize;
    // Four f32 per texel, whole multiples of 8, at most 64 MiB (21845 rows of 768) each.
    let rows_per_texture = (max_dim * 4).min((64 << 20) / (768 * 4)) / 8 * 8;
    assert_eq!(
        model.info().embedding_buffers,
        50257usize.div_ceil(rows_per_texture),
        "wte textures on an adapter {max_dim} texels wide"
    );
    let tokens: Vec<u32> = vec![50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290];
    let mut s = model.session().unwrap();
    let full = s.forward(&tokens).unwrap();
    s.reset();
    s.forward(&tokens[..6]).unwrap();
    let mut last = Vec::new();
    for &t in &tokens[6..] {
        last = s.forward(&[t]).unwrap();
    }
    assert_eq!(s.position(), tokens.len());
    let scale = full.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0);
    let err = full
        .iter()
        .zip(&last)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        err <= 1e-4 * scale + 1e-6,
        "decode vs recompute: max error {err}, logit scale {scale}"
    );
    // Tokens in the top rows of the vocabulary live in the second wte buffer.
    let l = s.forward(&[50255]).unwrap();
    assert_eq!(l.len(), 50257);
}
