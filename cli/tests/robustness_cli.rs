//! Robustness through the binary: bad options exit 1, bad input files or models exit 2 with one
//! `error: ...` line on stderr. The cases that fail before an adapter is opened need no GPU.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{copy_fixture, fixture, tempdir};

fn wgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn has_gpu() -> bool {
    common::test_gpu().is_some()
}

/// Asserts exit code 2 and a single `error:` line on stderr that contains `want`.
fn fails_with(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(want), "want `{want}` in: {err}");
    assert!(out.stdout.is_empty());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn out_of_range_options_are_usage_errors() {
    let m = fixture("tiny-orig-f32");
    let cases = [
        "--top-p=0",
        "--top-p=1.5",
        "--top-p=NaN",
        "--temperature=-1",
        "--temperature=inf",
        "--repeat-penalty=0",
        "--top-k=-1",
        "--max-tokens=-5",
        "--seed=x",
    ];
    for extra in cases {
        let out = wgpt(&["generate", "--model", s(&m), "--prompt", "x", extra]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.starts_with("error: invalid value"), "{extra:?}: {err}");
    }
    for extra in ["--context=1", "--chunks=0"] {
        let out = wgpt(&["perplexity", "--model", s(&m), "--file", "x", extra]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains("must be ≥"), "{err}");
    }
}

#[test]
fn bad_prompts_and_text_files_fail_before_the_gpu() {
    let m = fixture("tiny-orig-f32");
    let dir = tempdir();
    let bad_utf8 = dir.path().join("bad.txt");
    std::fs::write(&bad_utf8, b"ROMEO: \xff\xfe caught").unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.txt");

    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", s(&m)];
        args.extend_from_slice(extra);
        wgpt(&args)
    };
    fails_with(&gen(&["--prompt", ""]), "the prompt is empty");
    fails_with(&gen(&["--prompt-file", s(&empty)]), "the prompt is empty");
    fails_with(
        &gen(&["--prompt-file", s(&bad_utf8)]),
        "is not valid UTF-8 (byte 7)",
    );
    fails_with(
        &gen(&["--prompt-file", s(&missing)]),
        "cannot read prompt file",
    );

    // The same from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["generate", "--model", s(&m), "--prompt-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"ROMEO: \xff\xfe caught").unwrap();
    fails_with(
        &child.wait_with_output().unwrap(),
        "prompt from standard input is not valid UTF-8 (byte 7)",
    );

    let ppl = |file: &Path| wgpt(&["perplexity", "--model", s(&m), "--file", s(file)]);
    fails_with(&ppl(&empty), "is empty: perplexity needs at least 2 tokens");
    fails_with(&ppl(&bad_utf8), "is not valid UTF-8 (byte 7)");
    fails_with(&ppl(&missing), "cannot read");
}

#[test]
fn broken_model_directories_exit_2_with_one_line() {
    if !has_gpu() {
        return;
    }
    let run = |dir: &Path| wgpt(&["generate", "--model", s(dir), "--prompt", "x", "--cpu"]);

    let dir = copy_fixture("tiny-orig-f32");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    fails_with(&run(dir.path()), "tokenizer.json: No such file");

    let dir = copy_fixture("tiny-orig-f32");
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&run(dir.path()), "truncated");

    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&st, &huge).unwrap();
    fails_with(
        &run(dir.path()),
        "header length field says 1152921504606846976 bytes",
    );

    let dir = copy_fixture("tiny-orig-f32");
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"n_layer\": 2", "\"n_layer\": 1000000")).unwrap();
    let t0 = Instant::now();
    let out = run(dir.path());
    fails_with(&out, "`n_layer` = 1000000 is out of range 1..=1024");
    assert!(t0.elapsed() < Duration::from_secs(10));

    let dir = copy_fixture("tiny-sharded-f32");
    std::fs::remove_file(dir.path().join("model-00003-of-00003.safetensors")).unwrap();
    fails_with(
        &run(dir.path()),
        "shard `model-00003-of-00003.safetensors` is missing",
    );
}

#[test]
fn nan_weights_exit_2_naming_the_cause() {
    if !has_gpu() {
        return;
    }
    let dir = copy_fixture("tiny-orig-f32");
    let st = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    // The last value of the last tensor, `wte.weight`: token 388's embedding, so its logit.
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    let out = wgpt(&["generate", "--model", s(dir.path()), "--prompt", "To be"]);
    fails_with(&out, "non-finite logits");
    // Greedy decoding sees it as well, also where it takes the argmax on the GPU.
    let args = ["generate", "--model", s(dir.path()), "--prompt", "To be"];
    for kernels in ["cooperative", "barrier-free"] {
        let out = wgpt(&[&args[..], &["--temperature", "0", "--kernels", kernels]].concat());
        fails_with(&out, "non-finite logits");
    }
}

#[test]
fn max_tokens_past_the_context_stops_with_reason_context() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-sharded-f32"); // 32 positions
    let out = wgpt(&[
        "generate",
        "--model",
        s(&m),
        "--prompt",
        "To be",
        "--max-tokens",
        "100",
        "--seed",
        "3",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stop_reason"], "context", "{v}");
    let prompt = v["prompt_tokens"].as_u64().unwrap();
    assert_eq!(v["generated_tokens"].as_u64().unwrap(), 32 - prompt + 1);
}

#[test]
fn perplexity_of_one_token_is_a_clear_error() {
    if !has_gpu() {
        return;
    }
    let dir = tempdir();
    let f = dir.path().join("one.txt");
    std::fs::write(&f, "a").unwrap();
    let m = fixture("tiny-orig-f32");
    let out = wgpt(&["perplexity", "--model", s(&m), "--file", s(&f)]);
    fails_with(
        &out,
        "nothing to score: the text has 1 token(s); perplexity needs at least 2",
    );
}
