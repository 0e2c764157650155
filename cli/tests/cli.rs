//! The `wgpt` binary: subcommands, `--json` output, streaming and exit codes
//! (0 ok, 1 usage, 2 input/model, 3 device), and the edges a new user meets first.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

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
    common::test_gpu().is_some()
}

/// `--cpu` when the tests run on a software adapter (as `test_gpu` picks), so the binary
/// runs on the tests' adapter.
fn cpu_flag() -> &'static [&'static str] {
    if std::env::var("WGPT_TEST_GPU").is_err() {
        &["--cpu"]
    } else {
        &[]
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code and that stderr is exactly `message` on one line, stdout empty.
fn fails(out: &Output, code: i32, message: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err, format!("{message}\n"));
    assert!(out.stdout.is_empty());
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
    let test_backend = common::test_gpu().unwrap().adapter().backend.clone();
    assert_eq!(v["backend"].as_str(), Some(test_backend.as_str()), "{v}");
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
    // The stats line names the adapter and its backend (Vulkan and GL look alike otherwise).
    let gpu = common::test_gpu().unwrap();
    let on = format!(" on {} ({})]", gpu.adapter().name, gpu.adapter().backend);
    assert!(err.trim_end().ends_with(&on), "{err}");
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
    assert!(v["backend"].is_string(), "{v}");
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

/// `info` lists the adapters of every backend (not only the one it would pick), has
/// `--json`, and shows the config as config.json names things.
#[test]
fn info_lists_every_backend_and_the_config_as_written() {
    if !has_gpu() {
        return;
    }
    let m = fixture("tiny-sharded-f32"); // activation_function: gelu_pytorch_tanh
    let out = wgpt(&["info", "--model", m.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let listed: Vec<(String, String)> = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_string();
            (s("name"), s("backend"))
        })
        .collect();
    // Every adapter of every backend, as the library sees them one backend at a time.
    let mut each = Vec::new();
    for b in [
        wgpt::wgpu::Backends::VULKAN,
        wgpt::wgpu::Backends::METAL,
        wgpt::wgpu::Backends::DX12,
        wgpt::wgpu::Backends::GL,
    ] {
        let opts = wgpt::GpuOptions::default().with_backends(b);
        for a in wgpt::Gpu::adapters(&opts).unwrap() {
            each.push((a.name, a.backend));
        }
    }
    let mut sorted = listed.clone();
    sorted.sort();
    each.sort();
    assert_eq!(sorted, each);
    let chosen = &v["chosen"];
    assert!(
        chosen["limits"]["max_buffer_size"].as_u64().unwrap() > 0,
        "{v}"
    );
    let model = &v["model"];
    assert_eq!(model["config"]["activation_function"], "gelu_pytorch_tanh");
    assert_eq!(model["config"]["n_positions"], 32);
    assert_eq!(model["file_dtypes"], serde_json::json!(["f32"]));
    // The text form prints the same names and values, not wgpt's enum names.
    let out = wgpt(&["info", "--model", m.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\n    activation_function gelu_pytorch_tanh\n"),
        "{text}"
    );
    assert!(!text.contains("GeluTanh"), "{text}");
    for (name, backend) in &listed {
        assert!(text.contains(&format!("  {name} ({backend}, ")), "{text}");
    }
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
    let args = [
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt-file",
        f.to_str().unwrap(),
    ];
    let out = wgpt(&[&args[..], &["--max-tokens", "4", "--json"]].concat());
    fails(
        &out,
        2,
        "error: the prompt has 2379 tokens but the context in use is 32; shorten it, pass --truncate or raise --ctx (the model's context is 32)",
    );
    // --truncate keeps the last tokens, leaving room for --max-tokens, and says so.
    let out = wgpt(&[&args[..], &["--max-tokens", "4", "--truncate", "--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["prompt_tokens"].as_u64(), Some(28));
    assert_eq!(
        stderr(&out),
        "note: the prompt has 2379 tokens; kept its last 28 so that 4 new tokens fit the model's context of 32\n"
    );
    // --max-tokens that leaves no room for the prompt is refused instead of keeping 1 token.
    for n in ["32", "40"] {
        let out = wgpt(&[&args[..], &["--max-tokens", n, "--truncate"]].concat());
        fails(
            &out,
            2,
            &format!("error: --truncate cannot leave room for --max-tokens {n} in the model's context of 32 tokens; pass --max-tokens below 32"),
        );
    }
}

/// `wgpt` alone prints the usage and the commands (clap's help) and exits with the usage code.
#[test]
fn no_arguments_print_usage_and_the_commands() {
    let out = wgpt(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("Usage: wgpt <COMMAND>"), "{err}");
    for command in ["generate", "perplexity", "info", "bench", "completions"] {
        assert!(err.contains(&format!("\n  {command} ")), "{command}: {err}");
    }
    assert!(
        err.contains("Exit codes: 0 success, 1 usage error"),
        "{err}"
    );
}

/// Negative numbers after a numeric option reach its value check (not "unexpected argument").
#[test]
fn negative_numbers_reach_the_value_checks() {
    let cases: [(&[&str], &str); 9] = [
        (&["generate", "-p", "x", "--temperature", "-1"], "error: invalid value '-1' for '--temperature <TEMPERATURE>': must be ≥ 0, got -1"),
        (&["generate", "-p", "x", "--top-k", "-1"], "error: invalid value '-1' for '--top-k <TOP_K>': must be ≥ 0, got -1"),
        (&["generate", "-p", "x", "--max-tokens", "-5"], "error: invalid value '-5' for '--max-tokens <MAX_TOKENS>': must be ≥ 0, got -5"),
        (&["generate", "-p", "x", "--seed", "-1"], "error: invalid value '-1' for '--seed <SEED>': must be ≥ 0, got -1"),
        (&["generate", "-p", "x", "--top-p", "-0.5"], "error: invalid value '-0.5' for '--top-p <TOP_P>': must be in (0, 1], got -0.5"),
        (&["generate", "-p", "x", "--repeat-penalty", "-2"], "error: invalid value '-2' for '--repeat-penalty <REPEAT_PENALTY>': must be > 0, got -2"),
        (&["perplexity", "--file", "x", "--context", "-1"], "error: invalid value '-1' for '--context <CONTEXT>': must be ≥ 2, got -1"),
        (&["bench", "-n", "-3"], "error: invalid value '-3' for '--n-gen <GEN>': must be ≥ 0, got -3"),
        (&["bench", "-r", "-2"], "error: invalid value '-2' for '--reps <REPS>': must be ≥ 1, got -2"),
    ];
    for (args, message) in cases {
        fails(&wgpt(args), 1, message);
    }
}

/// Bad option values are usage errors (1); an adapter or model path that cannot work is
/// reported for what it is.
#[test]
fn backend_reps_and_model_path_errors() {
    fails(
        &wgpt(&["info", "--backend", "foo"]),
        1,
        "error: invalid value 'foo' for '--backend <BACKEND>' [possible values: vulkan, metal, dx12, gl]",
    );
    fails(
        &wgpt(&["bench", "-r", "0"]),
        1,
        "error: invalid value '0' for '--reps <REPS>': must be ≥ 1, got 0",
    );
    fails(
        &wgpt(&["completions", "tcsh"]),
        1,
        "error: invalid value 'tcsh' for '<SHELL>' [possible values: bash, elvish, fish, powershell, zsh]",
    );
    if cfg!(target_os = "linux") {
        fails(
            &wgpt(&["info", "--backend", "metal"]),
            3,
            "error: no Metal adapter found; Metal exists only on macOS and iOS",
        );
        fails(
            &wgpt(&["info", "--backend", "dx12"]),
            3,
            "error: no DX12 adapter found; DX12 exists only on Windows",
        );
    }
    let file = fixture("heldout_slice.txt");
    fails(
        &wgpt(&["generate", "--model", file.to_str().unwrap(), "-p", "x"]),
        2,
        &format!(
            "error: {} is a file, not a model directory (one holding config.json, model.safetensors and tokenizer.json)",
            file.display()
        ),
    );
    fails(
        &wgpt(&["generate", "--model", "/nonexistent/model", "-p", "x"]),
        2,
        "error: model directory /nonexistent/model does not exist",
    );
}

#[test]
fn exit_code_3_for_a_missing_adapter() {
    let Some(gpu) = common::test_gpu() else {
        return;
    };
    let out = wgpt(&["info", "--adapter", "no-such-adapter-xyz"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: no adapter matches `no-such-adapter-xyz`; found: ")
            && err.contains(&gpu.adapter().name)
            && err.lines().count() == 1,
        "{err}"
    );
}

/// `wgpt … | head`: a closed stdout ends the command quietly with exit 0.
#[test]
fn a_closed_stdout_ends_quietly() {
    if !has_gpu() {
        return;
    }
    for args in [
        &["generate", "--prompt", "ROMEO:", "--max-tokens", "200"][..],
        &["info"][..],
        &["completions", "bash"][..],
    ] {
        let device = if args[0] == "completions" {
            &[][..]
        } else {
            cpu_flag()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(args)
            .args(device)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
    }
}

/// `--prompt-file -` reads the prompt from stdin; `--echo` prints it before the continuation.
#[test]
fn prompt_from_stdin_and_echo() {
    if !has_gpu() {
        return;
    }
    let run = |extra: &[&str], stdin: &str| {
        let args = [
            &["generate", "--max-tokens", "8", "--temperature", "0"][..],
            extra,
        ]
        .concat();
        let (code, out, err) = wgpt_stdin(&args, stdin);
        assert_eq!(code, 0, "{extra:?}: {err}");
        out
    };
    let from_flag = json_str(&run(&["--prompt", "JULIET:", "--json"], ""));
    let from_stdin = json_str(&run(&["--prompt-file", "-", "--json", "--echo"], "JULIET:"));
    assert_eq!(from_stdin["token_ids"], from_flag["token_ids"]);
    assert_eq!(from_stdin["prompt"], "JULIET:");
    assert!(from_flag.get("prompt").is_none());
    // Streamed: the prompt, then exactly the text --json reports.
    let streamed = run(&["--prompt-file", "-", "--echo"], "JULIET:");
    let want = format!("JULIET:{}\n", from_flag["text"].as_str().unwrap());
    assert_eq!(streamed, want);
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The CLI's sampling defaults are `SamplerConfig::default()`'s, seed included.
#[test]
fn cli_defaults_are_the_librarys() {
    let Some(gpu) = common::test_gpu() else {
        return;
    };
    let model = wgpt::Model::load_default(&gpu, &wgpt::LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    let lib: Vec<u32> = s
        .generate("ROMEO:", wgpt::SamplerConfig::default(), 24)
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    let out = wgpt(
        &[
            &["generate", "-p", "ROMEO:", "-n", "24", "--json"][..],
            cpu_flag(),
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["token_ids"], serde_json::json!(lib));
    // And the help shows those values as the defaults.
    let help = String::from_utf8(wgpt(&["generate", "--help"]).stdout).unwrap();
    let d = wgpt::SamplerConfig::default();
    for want in [
        format!("[default: {}]", d.temperature),
        format!("[default: {}]", d.top_k),
        format!("[default: {}]", d.top_p),
        format!("[default: {}]", d.seed),
    ] {
        assert!(help.contains(&want), "{want}: {help}");
    }
}

#[test]
fn shell_completions() {
    for (shell, marker) in [
        ("bash", "complete -F _wgpt"),
        ("zsh", "#compdef wgpt"),
        ("fish", "complete -c wgpt"),
    ] {
        let out = wgpt(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["generate", "perplexity", "info", "bench"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
        assert!(script.contains("--max-tokens"), "{shell}");
    }
}

/// Long work shows a progress bar when stderr is a terminal, and nothing when it is not or
/// with `--json`.
#[cfg(unix)]
#[test]
fn progress_on_a_terminal_only() {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    if !has_gpu() {
        return;
    }
    let text = fixture("default-model/heldout_slice.txt");
    let args = [
        "perplexity",
        "--file",
        text.to_str().unwrap(),
        "--context",
        "64",
    ];
    // stderr on a pseudo-terminal.
    let on_tty = |extra: &[&str]| -> (i32, String) {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(args)
            .args(extra)
            .args(cpu_flag())
            .stdout(Stdio::null())
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        // Read until the child's end of the terminal closes (EIO).
        let mut reader = std::fs::File::from(master);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let code = child.wait().unwrap().code().unwrap();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    };
    let (code, tty) = on_tty(&[]);
    assert_eq!(code, 0, "{tty}");
    assert!(
        tty.contains("scoring") && tty.contains("windows"),
        "{tty:?}"
    );
    assert!(tty.contains("loading"), "{tty:?}");
    let (code, tty) = on_tty(&["--json"]);
    assert_eq!(code, 0, "{tty}");
    assert!(
        !tty.contains("scoring") && !tty.contains("loading"),
        "{tty:?}"
    );
    // Piped: only the statistics line.
    let out = wgpt(&[&args[..], cpu_flag()].concat());
    assert!(out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("[") && !err.contains('\r'), "{err:?}");
}

/// Runs `wgpt` with `stdin` piped in; (exit code, stdout, stderr).
fn wgpt_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .args(cpu_flag())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that exits before reading its input (an error) closes the pipe: what it said
    // on stderr is the test's message then, not the write's broken pipe.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn chat_through_stdin_keeps_turns_and_resets() {
    if !has_gpu() {
        return;
    }
    // The Qwen2 fixture carries Qwen2.5's template; its tiny tokenizer needs a longer
    // context than 48 for two turns (rotary positions: the same model).
    let dir = common::copy_fixture("tiny-qwen2-bf16");
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "\"max_position_embeddings\": 48",
            "\"max_position_embeddings\": 96",
        ),
    )
    .unwrap();
    let model = dir.path().to_str().unwrap();
    let args = [
        "chat",
        "--model",
        model,
        "--system",
        "S",
        "-n",
        "3",
        "--temperature",
        "0",
    ];
    let (code, out, err) = wgpt_stdin(&args, "Hi\nOk\n/reset\nHi\n");
    assert_eq!(code, 0, "{err}");
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(replies.len(), 3, "{out:?}");
    // After /reset the conversation starts over: the same first reply.
    assert_eq!(replies[0], replies[2]);
    assert!(err.contains("(conversation reset)"), "{err}");
    // The first reply is what `generate --chat` gives for the same message.
    let one = json_str(
        &wgpt_stdin(
            &[
                "generate",
                "--model",
                model,
                "--chat",
                "--system",
                "S",
                "-p",
                "Hi",
                "-n",
                "3",
                "--temperature",
                "0",
                "--json",
            ],
            "",
        )
        .1,
    );
    assert_eq!(replies[0], one["text"].as_str().unwrap());
    // The rendered prompt's tokens: <|im_start|>system\nS<|im_end|>\n… (26 with this tokenizer).
    assert_eq!(one["prompt_tokens"], 26);
    // A model without a template cannot chat: one line, exit 2.
    let (code, out, err) = wgpt_stdin(
        &["chat", "--model", fixture("tiny-hf-f16").to_str().unwrap()],
        "Hi\n",
    );
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(err, "error: this model has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja)\n");
}

#[test]
fn stop_strings_end_generation_before_them() {
    if !has_gpu() {
        return;
    }
    let base = [
        "generate", "-p", "ROMEO:", "-n", "60", "--seed", "7", "--json",
    ];
    let full = json_str(&wgpt_stdin(&base, "").1);
    let full_text = full["text"].as_str().unwrap();
    // A stop string taken from the middle of the unstopped output.
    let stop: String = full_text.chars().skip(20).take(6).collect();
    let at = full_text.find(&stop).unwrap();
    let stopped = json_str(
        &wgpt_stdin(
            &[&base[..], &["--stop", &stop, "--stop", "zzzz"]].concat(),
            "",
        )
        .1,
    );
    assert_eq!(stopped["stop_reason"], "stop");
    assert_eq!(stopped["text"].as_str().unwrap(), &full_text[..at]);
    // The token ids agree with the text: those of the text before the stop string, the first
    // of the unstopped run's; a token that only spelled the stop string is not among them.
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    let (kept, all) = (ids(&stopped), ids(&full));
    assert_eq!(stopped["generated_tokens"], kept.len());
    assert_eq!(kept[..], all[..kept.len()]);
    assert!(kept.len() < all.len());
    // Streamed: exactly the same text.
    let streamed = wgpt_stdin(&[&base[..7], &["--stop", &stop]].concat(), "").1;
    assert_eq!(streamed, format!("{}\n", &full_text[..at]));
}

#[test]
fn info_shows_the_kv_cache_of_grouped_query_attention() {
    if !has_gpu() {
        return;
    }
    let dir = fixture("tiny-llama-gqa-f16");
    let mut args = vec!["info", "--model", dir.to_str().unwrap(), "--json"];
    args.extend(cpu_flag());
    let v = json(&wgpt(&args));
    let m = &v["model"];
    // 2 layers × 64 positions × (keys and values) × 2 kv heads × 16 dims × 2 bytes (the f16
    // cache): a third of what 6 heads would take.
    assert_eq!(m["kv_cache_bytes"], 2 * 64 * 2 * 2 * 16 * 2);
    assert_eq!(m["kv_cache_dtype"], "f16");
    assert_eq!(
        (m["context"].as_u64(), m["model_context"].as_u64()),
        (Some(64), Some(64))
    );
    assert_eq!(
        (m["n_kv_head"].as_u64(), m["n_head"].as_u64()),
        (Some(2), Some(6))
    );
    let text = String::from_utf8(
        wgpt(
            &args[..3]
                .iter()
                .chain(cpu_flag())
                .copied()
                .collect::<Vec<_>>(),
        )
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains(
            "KV cache 16384 bytes (0.0 MB, f16) per session: 2 key/value heads for 6 query heads"
        ),
        "{text}"
    );
}

/// The binary quiets Mesa's `XDG_RUNTIME_DIR` complaint itself when the variable is unset
/// (started directly, outside cargo): its stderr carries only wgpt's own lines.
#[test]
fn no_mesa_noise_without_xdg_runtime_dir() {
    if !has_gpu() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["info", "--json"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

/// Writes a safetensors file of f32 tensors (name, shape), filled with small seeded values.
fn write_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// A model with Llama 3.2 1B's context (131072, llama3 scaling) and key/value width (16
/// layers × 8 key/value heads × 64), small otherwise. At the default context it generates 16
/// tokens with a peak RSS under 1.5 GB (the KV cache over the model's whole context in f32,
/// as wgpt once allocated it, is 8.6 GB); `wgpt info` shows both contexts; a context the
/// adapter cannot hold is refused before anything is allocated, naming --ctx.
#[cfg(target_os = "linux")]
#[test]
fn a_long_context_model_runs_in_the_memory_its_context_in_use_needs() {
    if !has_gpu() {
        return;
    }
    let dir = common::tempdir();
    let (c, heads, hd, f, layers, vocab) = (64usize, 8usize, 64usize, 128usize, 16, 389usize);
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": null, "eos_token_id": null, "head_dim": hd, "hidden_act": "silu",
        "hidden_size": c, "initializer_range": 0.02, "intermediate_size": f,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": heads,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "float32",
        "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": vocab
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let mut tensors = vec![("model.embed_tokens.weight".to_string(), vec![vocab, c])];
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let q = heads * hd;
        tensors.extend([
            (p("input_layernorm.weight"), vec![c]),
            (p("self_attn.q_proj.weight"), vec![q, c]),
            (p("self_attn.k_proj.weight"), vec![q, c]),
            (p("self_attn.v_proj.weight"), vec![q, c]),
            (p("self_attn.o_proj.weight"), vec![c, q]),
            (p("post_attention_layernorm.weight"), vec![c]),
            (p("mlp.gate_proj.weight"), vec![f, c]),
            (p("mlp.up_proj.weight"), vec![f, c]),
            (p("mlp.down_proj.weight"), vec![c, f]),
        ]);
    }
    tensors.push(("model.norm.weight".to_string(), vec![c]));
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    let model = dir.path().to_str().unwrap();

    // Peak RSS of the child alone (wait4, which also reaps it), not of this test process's
    // other children.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args([
            "generate",
            "--model",
            model,
            "--prompt",
            "ROMEO:",
            "--max-tokens",
            "16",
        ])
        .args(["--temperature", "0", "--json"])
        .args(cpu_flag())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut errors = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is the child's, not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{errors}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["generated_tokens"], 16, "{v}");
    let peak = usage.ru_maxrss as u64 * 1024;
    eprintln!(
        "131072-position model at the default context: peak RSS {:.0} MB",
        peak as f64 / 1e6
    );
    assert!(peak < 1_500_000_000, "peak RSS {peak} bytes");

    let out = wgpt(&[&["info", "--model", model], cpu_flag()].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("context 4096 positions in use (--ctx) of the model's 131072"),
        "{text}"
    );
    // The whole context: 268 MB of f16 keys and values per layer, more than lavapipe binds.
    let out = wgpt(&[&["info", "--model", model, "--ctx", "0"], cpu_flag()].concat());
    if !out.status.success() {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("--ctx") && err.contains("131072 positions"),
            "{err}"
        );
    }
}

#[test]
fn the_cli_runs_a_gguf_file_and_refuses_a_truncated_one() {
    let exe = env!("CARGO_BIN_EXE_wgpt");
    if common::test_gpu().is_none() {
        return;
    }
    let path = fixture("gguf/tiny-llama-q8_0.gguf");
    let out = std::process::Command::new(exe)
        .args(["generate", "--model"])
        .arg(&path)
        .args(["--prompt", "ROMEO:", "--max-tokens", "4", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 4);
    let dir = common::tempdir();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = std::process::Command::new(exe)
        .args(["generate", "--model"])
        .arg(&cut)
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("cut.gguf"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
