//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's root: this crate's, or its parent for the `cli` crate's tests.
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("tests/fixtures").is_dir())
        .unwrap_or(&here)
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
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
    reference_file(&fixture(model).join("reference.json"))
}

/// A reference file in `reference.json`'s format.
pub fn reference_file(path: &std::path::Path) -> Reference {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

/// A small synthetic model config (32 wide, 2 layers, 16 positions, 50 tokens). `Config` is
/// `#[non_exhaustive]`: built from a preset with its fields changed.
pub fn tiny_config(eos_token_id: Option<u32>) -> wgpt::Config {
    let mut c = wgpt::Config::preset("gpt2").unwrap();
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_positions = 16;
    c.n_inner = 40;
    c.vocab_size = 50;
    c.layer_norm_epsilon = 1e-5;
    c.activation = wgpt::Activation::GeluTanh;
    c.tie_word_embeddings = true;
    c.eos_token_ids = eos_token_id.into_iter().collect();
    c.scale_attn_weights = true;
    c
}

/// A temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty temporary directory (unique per process and call).
pub fn tempdir() -> TempDir {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wgpt-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A copy of a fixture model directory that a test may break.
pub fn copy_fixture(name: &str) -> TempDir {
    let dir = tempdir();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// An error and its sources on one line, as the `wgpt` binary prints them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The options the tests open their adapter with: a software adapter unless `WGPT_TEST_GPU`
/// is set (then the best adapter).
pub fn test_gpu_options() -> wgpt::GpuOptions {
    wgpt::GpuOptions::default().with_prefer_cpu(std::env::var("WGPT_TEST_GPU").is_err())
}

/// The adapter tests run on: `None` (test skipped with a note) when there is none, except
/// under `CI=true`, where a missing adapter fails the test. With `WGPU_BACKEND` set, an
/// adapter of another backend fails the test (a GL run must not quietly test Vulkan).
/// `tests/wgpu_adapter.rs` fails when there is no adapter at all, so skipped GPU tests never
/// pass silently.
pub fn test_gpu() -> Option<wgpt::Gpu> {
    match wgpt::Gpu::new(&test_gpu_options()) {
        Ok(g) => {
            if let Ok(want) = std::env::var("WGPU_BACKEND") {
                let got = &g.adapter().backend;
                let wanted = wgpt::wgpu::Backends::from_comma_list(&want);
                assert!(
                    wgpt::wgpu::Backend::ALL
                        .into_iter()
                        .any(|b| wanted.contains(b.into()) && b.to_str().eq_ignore_ascii_case(got)),
                    "WGPU_BACKEND={want} but the test adapter is {}",
                    g.adapter()
                );
            }
            Some(g)
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true and no adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// Checks `model`'s logits against the reference: every position at once (prefill), then a
/// prefill of 5 and one decode step per token over the KV cache; each position's error
/// (relative to the logits' magnitude, [`rel_error`]) must stay under `tol`. Returns the
/// largest.
pub fn check_logits(model: &wgpt::Model, r: &Reference, tol: f64, what: &str) -> f64 {
    let mut s = model.session().unwrap();
    let mut worst = 0f64;
    s.forward_each(&r.prompt_ids, |i, l| {
        let e = rel_error(l, &r.logits[i]);
        worst = worst.max(e);
        assert!(e < tol, "{what} prefill position {i}: relative error {e}");
        Ok(())
    })
    .unwrap();
    s.reset();
    let l = s.forward(&r.prompt_ids[..5]).unwrap();
    assert!(rel_error(&l, &r.logits[4]) < tol, "{what}");
    for i in 5..r.prompt_ids.len() {
        let l = s.forward(&r.prompt_ids[i..i + 1]).unwrap();
        let e = rel_error(&l, &r.logits[i]);
        worst = worst.max(e);
        assert!(e < tol, "{what} decode position {i}: relative error {e}");
    }
    worst
}

/// Greedy generation from the reference's greedy prompt gives HF's ids, up to the first token
/// whose top-2 margin in the reference is `margin` or less (a near-tie that rounding may break
/// either way); where there is none, also the same length (generation stops at the same eos).
pub fn check_greedy(model: &wgpt::Model, r: &Reference, margin: f64, what: &str) {
    let eos = model.config().eos_token_ids.clone();
    let mut s = model.session().unwrap();
    let got: Vec<u32> = s
        .generate_ids(
            &r.greedy_prompt_ids,
            wgpt::SamplerConfig::greedy(),
            r.greedy_ids.len(),
        )
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    for (i, &w) in r.greedy_ids.iter().enumerate() {
        if r.greedy_margins[i] <= margin {
            return;
        }
        if eos.contains(&w) {
            assert_eq!(got.len(), i, "{what}: generated length (eos at {i})");
            return;
        }
        assert_eq!(got.get(i), Some(&w), "{what}: greedy token {i}");
    }
    assert_eq!(got.len(), r.greedy_ids.len(), "{what}: generated length");
}

/// Sets row `row` of tensor `name` (f32, f16 or bf16) of `dir/model.safetensors` to +∞: a
/// model whose logits are not finite after that token only (where the head is not tied).
pub fn poison_embedding_row(dir: &std::path::Path, name: &str, row: usize) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = &header[name];
    let inf: Vec<u8> = match t["dtype"].as_str().unwrap() {
        "F32" => f32::INFINITY.to_le_bytes().to_vec(),
        "F16" => 0x7c00u16.to_le_bytes().to_vec(),
        "BF16" => 0x7f80u16.to_le_bytes().to_vec(),
        d => panic!("{name}: {d}"),
    };
    let width = t["shape"][1].as_u64().unwrap() as usize;
    let start = 8 + n + t["data_offsets"][0].as_u64().unwrap() as usize + row * width * inf.len();
    for i in 0..width {
        let at = start + i * inf.len();
        bytes[at..at + inf.len()].copy_from_slice(&inf);
    }
    std::fs::write(&path, bytes).unwrap();
}
