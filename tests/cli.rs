//! The `wgpt` binary: subcommands, `--json` output, streaming and exit codes
//! (0 ok, 1 usage, 2 input/model, 3 device).

mod common;

use std::process::{Command, Output};

use common::{fixture, reference};

fn wgpt(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    out
}

fn has_gpu() -> bool {
    wgpt::gpu::test_gpu().is_some()
}

fn json(out: &Output) -> serde_json::Value {
    let s = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        s.trim_end().lines().count(),
        1,
        "stdout must be exactly one JSON line: {s:?}"
    );
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn generate_json() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-hf-f16");
    let out = wgpt(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt",
        "ROMEO:",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
        "--cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let ids = v["token_ids"].as_array().unwrap();
    let stop = v["stop_reason"].as_str().unwrap();
    assert!(
        stop == "max_tokens" && ids.len() == 6 || stop == "eos" && ids.len() < 6,
        "{v}"
    );
    assert!(v["prompt_tokens"].as_u64().unwrap() >= 2);
    assert!(v["text"].is_string());
    assert!(v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_s"].as_f64().is_some());
    assert!(!v["adapter"].as_str().unwrap().is_empty());
    // Greedy is deterministic: the same ids again.
    let again = json(&wgpt(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt",
        "ROMEO:",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
        "--cpu",
    ]));
    assert_eq!(again["token_ids"], v["token_ids"]);
}

#[test]
fn generate_streams_text_and_seed_reproduces() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-orig-f32");
    let args = [
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt",
        "To be",
        "--max-tokens",
        "20",
        "--seed",
        "5",
        "--top-k",
        "0",
    ];
    let a = wgpt(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let text = String::from_utf8(a.stdout.clone()).unwrap();
    assert!(!text.trim().is_empty());
    let err = String::from_utf8_lossy(&a.stderr);
    assert!(err.contains("tok/s"), "stats go to stderr: {err}");
    let b = wgpt(&args);
    assert_eq!(a.stdout, b.stdout, "same seed, same text");
}

#[test]
fn perplexity_json_matches_hf() {
    if !has_gpu() {
        return;
    }
    let r = reference("tiny-orig-f32");
    let m = fixture("tiny-orig-f32");
    let f = fixture("heldout_slice.txt");
    let out = wgpt(&[
        "perplexity",
        "--model",
        m.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(
        v["tokens_scored"].as_u64().unwrap() as usize,
        r.ppl_tokens_scored
    );
    let nll = v["nll_mean"].as_f64().unwrap();
    assert!(
        (nll - r.ppl_nll_mean).abs() / r.ppl_nll_mean < 1e-4,
        "{nll} vs {}",
        r.ppl_nll_mean
    );
    let bpb = v["bits_per_byte"].as_f64().unwrap();
    assert!((bpb - r.ppl_bits_per_byte).abs() / r.ppl_bits_per_byte < 1e-4);
    assert!((v["perplexity"].as_f64().unwrap() - nll.exp()).abs() < 1e-6 * nll.exp());
    let two = json(&wgpt(&[
        "perplexity",
        "--model",
        m.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
        "--chunks",
        "2",
        "--json",
    ]));
    assert_eq!(
        two["tokens_scored"].as_u64().unwrap() as usize,
        r.ppl_chunks2_tokens_scored
    );
}

#[test]
fn info_lists_adapter_and_model() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-untied-bf16");
    let out = wgpt(&["info", "--model", m.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains("adapters:") && s.contains("max_storage_buffer_binding_size"),
        "{s}"
    );
    assert!(s.contains("parameters 58708"), "{s}");
    assert!(s.contains("bf16"), "{s}");
}

#[test]
fn exit_codes() {
    // Usage errors: 1.
    assert_eq!(
        wgpt(&["generate", "--prompt", "x", "--top-p", "1.5"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        wgpt(&["generate", "--prompt", "x", "--temperature", "-1"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(wgpt(&["frobnicate"]).status.code(), Some(1));
    assert_eq!(wgpt(&["--help"]).status.code(), Some(0));
    if !has_gpu() {
        return;
    }
    // Input errors: 2, one line on stderr.
    let out = wgpt(&["generate", "--model", "/nonexistent/model", "--prompt", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/model"), "{err}");
    // Device errors: 3.
    let out = wgpt(&["info", "--adapter", "no-such-adapter-xyz"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-adapter-xyz"));
}

#[test]
fn long_prompt_needs_truncate() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-sharded-f32"); // 32 positions
    let f = fixture("heldout_slice.txt");
    let out = wgpt(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt-file",
        f.to_str().unwrap(),
        "--max-tokens",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("context") && err.contains("--truncate"),
        "{err}"
    );
    let out = wgpt(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt-file",
        f.to_str().unwrap(),
        "--max-tokens",
        "4",
        "--truncate",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["prompt_tokens"].as_u64(), Some(28));
}
