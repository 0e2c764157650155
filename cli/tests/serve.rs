//! `wgpt serve` as the binary on 127.0.0.1:0, driven by a minimal HTTP/1.1 client over
//! `std::net::TcpStream` (no client crate: the tests add no dependency): each endpoint,
//! streaming and not, greedy answers equal to `wgpt generate --temperature 0`, concurrent
//! streams equal to their solo runs, a disconnect freeing its slot, a full queue, and every
//! class of bad request answered with an OpenAI error object while the server keeps serving.
//! Every wait is bounded (socket timeouts, polling counts).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(120);

/// `--cpu` when the tests run on a software adapter (as `test_gpu` picks).
fn cpu_flag() -> &'static [&'static str] {
    if std::env::var("WGPT_TEST_GPU").is_err() {
        &["--cpu"]
    } else {
        &[]
    }
}

/// A running `wgpt serve`; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the server on a free port (`--port 0`) and waits for its "listening" line.
    fn start(args: &[&str]) -> Option<Server> {
        Self::start_logging(args, None)
    }

    /// As [`Server::start`], with the request log (`RUST_LOG` info) going to `log`.
    fn start_logging(args: &[&str], log: Option<&std::path::Path>) -> Option<Server> {
        common::test_gpu()?;
        let (rust_log, stderr) = match log {
            Some(p) => (
                "warn,wgpt::server=info",
                Stdio::from(std::fs::File::create(p).unwrap()),
            ),
            None => ("warn", Stdio::null()),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["serve", "--port", "0"])
            .args(cpu_flag())
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("the server prints its address");
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Some(Server { child, port })
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    /// One request on its own connection; (status, body).
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = self.connect();
        send(&mut s, method, path, body);
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        parse_response(&raw)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.request("POST", path, body.to_string().as_bytes());
        (status, json_of(&text))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.request("GET", path, b"");
        (status, json_of(&text))
    }

    /// A streamed request's `data:` payloads, in order.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let (status, text) = self.request("POST", path, body.to_string().as_bytes());
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(s: &mut TcpStream, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A body the server refuses part-way may be cut short by it.
    let _ = s.write_all(body);
}

/// Status and body (chunked transfer coding undone).
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, body.to_string());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    (status, out)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// `wgpt generate … --temperature 0 --json`.
fn generate(args: &[&str]) -> Value {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["generate", "--temperature", "0", "--json"])
        .args(cpu_flag())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The text and finish reason of a streamed completion (checking the chunk shapes), and the
/// usage chunk if there is one.
fn streamed(events: &[String], chat: bool) -> (String, String, Option<Value>) {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for (i, e) in events[..events.len() - 1].iter().enumerate() {
        let v = json_of(e);
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        assert_eq!(v["object"], object, "{e}");
        if v["choices"].as_array().unwrap().is_empty() {
            usage = Some(v["usage"].clone());
            continue;
        }
        let c = &v["choices"][0];
        if chat {
            assert_eq!(c["delta"].get("role").is_some(), i == 0, "{e}");
            text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        } else {
            text.push_str(c["text"].as_str().unwrap());
        }
        if let Some(f) = c["finish_reason"].as_str() {
            assert!(finish.is_none(), "one finish chunk");
            finish = Some(f.to_string());
        }
    }
    (text, finish.expect("a finish chunk"), usage)
}

#[test]
fn completions_stream_or_not_equal_greedy_generate() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (status, health) = server.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "wgpt-tinyshakespeare");
    let want = generate(&["--prompt", "ROMEO:", "--max-tokens", "24"]);
    let req = json!({"model": "wgpt-tinyshakespeare", "prompt": "ROMEO:", "max_tokens": 24, "temperature": 0});
    let (status, v) = server.post("/v1/completions", &req);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], want["text"]);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], want["prompt_tokens"]);
    assert_eq!(v["usage"]["completion_tokens"], 24);
    assert_eq!(
        v["usage"]["total_tokens"],
        want["prompt_tokens"].as_u64().unwrap() + 24
    );
    // Streamed: the same text in chunks, then the finish chunk, the usage chunk, [DONE].
    let mut s = req.clone();
    s["stream"] = true.into();
    s["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/completions", &s);
    assert!(events.len() > 10, "one chunk per token: {events:?}");
    let (text, finish, usage) = streamed(&events, false);
    assert_eq!(text, want["text"].as_str().unwrap());
    assert_eq!(finish, "length");
    // The same prompt again: all but its last token come from the prefix cache.
    let mut want_usage = v["usage"].clone();
    want_usage["prompt_tokens_details"]["cached_tokens"] =
        (want["prompt_tokens"].as_u64().unwrap() - 1).into();
    assert_eq!(usage.unwrap(), want_usage);
    // A stop string: the text before it, finish_reason "stop".
    let first_line = want["text"]
        .as_str()
        .unwrap()
        .split('\n')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(!first_line.is_empty());
    let mut r = req.clone();
    r["stop"] = json!(["\n\n", first_line]);
    let (_, v) = server.post("/v1/completions", &r);
    let got = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(want["text"].as_str().unwrap().starts_with(got) && !got.contains(&first_line));
    // The built-in model has no chat template: a clear 400.
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}]});
    let (status, v) = server.post("/v1/chat/completions", &chat);
    assert_eq!(status, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no chat template"));
}

#[test]
fn chat_completions_use_the_template_like_generate_chat() {
    // The Qwen2 fixture (Qwen2.5's template) with room for its system message: rotary
    // positions need no trained table, so a longer context is the same model.
    let dir = common::copy_fixture("tiny-qwen2-bf16");
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "\"max_position_embeddings\": 48",
        "\"max_position_embeddings\": 160",
    );
    std::fs::write(&cfg, text).unwrap();
    let model = dir.path().to_str().unwrap();
    let Some(server) = Server::start(&["--model", model]) else {
        return;
    };
    let want = generate(&[
        "--model",
        model,
        "--chat",
        "--system",
        "Be brief.",
        "--prompt",
        "Hello there",
        "--max-tokens",
        "12",
    ]);
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
    ]);
    let req = json!({"messages": messages, "max_completion_tokens": 12, "temperature": 0});
    let (status, v) = server.post("/v1/chat/completions", &req);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], want["text"]);
    let reason = if want["stop_reason"] == "max_tokens" {
        "length"
    } else {
        "stop"
    };
    assert_eq!(v["choices"][0]["finish_reason"], reason);
    assert_eq!(v["usage"]["prompt_tokens"], want["prompt_tokens"]);
    let mut s = req.clone();
    s["stream"] = true.into();
    let events = server.stream("/v1/chat/completions", &s);
    let (text, finish, usage) = streamed(&events, true);
    assert_eq!(text, want["text"].as_str().unwrap());
    assert_eq!(finish, reason);
    assert!(usage.is_none());
    // The model id is the directory's name; another is a 404.
    let (_, models) = server.get("/v1/models");
    let id = models["data"][0]["id"].as_str().unwrap().to_string();
    let mut r = req.clone();
    r["model"] = id.into();
    assert_eq!(server.post("/v1/chat/completions", &r).0, 200);
    r["model"] = "gpt-4".into();
    let (status, v) = server.post("/v1/chat/completions", &r);
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[test]
fn eight_concurrent_streams_equal_their_solo_runs() {
    let Some(server) = Server::start(&["--max-batch", "8"]) else {
        return;
    };
    let prompts = [
        "ROMEO:",
        "JULIET:\nO",
        "First Citizen:\nWe are",
        "KING",
        "To be",
        "Thou art",
        "MENENIUS:",
        "A",
    ];
    let body = |i: usize| {
        let mut b = json!({"prompt": prompts[i], "max_tokens": 20 + i, "stream": true});
        // Six greedy, two sampled with their seeds.
        if i < 6 {
            b["temperature"] = 0.into();
        } else {
            b["temperature"] = 0.9.into();
            b["seed"] = (1000 + i).into();
        }
        b
    };
    let solo: Vec<String> = (0..8)
        .map(|i| streamed(&server.stream("/v1/completions", &body(i)), false).0)
        .collect();
    let port = server.port;
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let b = body(i);
            std::thread::spawn(move || {
                let s = Server::client(port);
                streamed(&s.stream("/v1/completions", &b), false).0
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), solo[i], "stream {i}");
    }
    assert!(started.elapsed() < TIMEOUT);
}

impl Server {
    /// A handle on a server another `Server` owns (for client threads); kills nothing.
    fn client(port: u16) -> ClientOnly {
        ClientOnly(port)
    }
}

struct ClientOnly(u16);

impl ClientOnly {
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.0)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        send(&mut s, "POST", path, body.to_string().as_bytes());
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let (status, text) = parse_response(&raw);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Polls /health until `active` and `queued` are 0 (bounded).
fn wait_idle(server: &Server) {
    for _ in 0..300 {
        let (_, h) = server.get("/health");
        if h["active"] == 0 && h["queued"] == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not become idle");
}

#[test]
fn a_disconnect_frees_the_slot_and_a_full_server_answers_503() {
    let Some(server) = Server::start(&["--max-batch", "1", "--max-queue", "0"]) else {
        return;
    };
    // A long stream; read its first chunk, so it is running.
    let long = json!({"prompt": "ROMEO:", "max_tokens": 240, "temperature": 0, "stream": true});
    let mut s = server.connect();
    send(
        &mut s,
        "POST",
        "/v1/completions",
        long.to_string().as_bytes(),
    );
    let mut first = [0u8; 256];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let (_, h) = server.get("/health");
    assert_eq!(h["active"], 1);
    // The one slot is taken and no request may wait: 503 with an error object.
    let short = json!({"prompt": "A", "max_tokens": 2});
    let (status, v) = server.post("/v1/completions", &short);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["type"], "server_error");
    // The client goes away mid-stream: its sequence is cancelled (not run to its end) and the
    // slot freed.
    drop(s);
    wait_idle(&server);
    assert_eq!(server.get("/health").1["cancelled"], 1);
    let (status, v) = server.post("/v1/completions", &short);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let error = |status: u16, text: &str, want_status: u16, want_type: &str| {
        assert_eq!(status, want_status, "{text}");
        let v = json_of(text);
        assert_eq!(v["error"]["type"], want_type, "{text}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        v
    };
    let (st, t) = server.request("POST", "/v1/completions", b"{not json");
    error(st, &t, 400, "invalid_request_error");
    for (body, param) in [
        (json!({"prompt": "A", "temperature": "hot"}), "temperature"),
        (json!({"prompt": "A", "temperature": 3}), "temperature"),
        (json!({"prompt": "A", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "A", "top_p": 0}), "top_p"),
        (json!({"prompt": "A", "stream": "yes"}), "stream"),
        (json!({"prompt": "A", "stop": [1]}), "stop"),
        (json!({"prompt": "A", "n": 17}), "n"),
        (json!({"prompt": "A", "n": 0}), "n"),
        (
            json!({"prompt": "A", "presence_penalty": 3}),
            "presence_penalty",
        ),
        (json!({"prompt": "A", "logit_bias": {"x": 1}}), "logit_bias"),
        (
            json!({"prompt": "A", "logit_bias": {"5": 101}}),
            "logit_bias",
        ),
        (
            json!({"prompt": "A", "logit_bias": {"100000": 1}}),
            "logit_bias",
        ),
        (json!({"prompt": "A", "logprobs": 21}), "logprobs"),
        (
            json!({"prompt": "A", "tools": [{"type": "function"}]}),
            "tools",
        ),
        (
            json!({"prompt": "A", "response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        (
            json!({"prompt": "A", "response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            json!({"prompt": "A", "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "foo"}}}}),
            "response_format",
        ),
        (json!({"prompt": "A", "echo": true}), "echo"),
        (
            json!({"prompt": "A", "skip_special_tokens": 1}),
            "skip_special_tokens",
        ),
        (json!({"prompt": 5}), "prompt"),
        (json!({"prompt": "A", "model": 5}), "model"),
    ] {
        let (st, t) = server.request("POST", "/v1/completions", body.to_string().as_bytes());
        let v = error(st, &t, 400, "invalid_request_error");
        assert_eq!(v["error"]["param"], param, "{body}");
    }
    let (st, t) = server.request("POST", "/v1/chat/completions", br#"{"messages": "hi"}"#);
    error(st, &t, 400, "invalid_request_error");
    // A prompt longer than the context (256 tokens).
    let long = "ROMEO: ".repeat(300);
    let (st, t) = server.request(
        "POST",
        "/v1/completions",
        json!({"prompt": long}).to_string().as_bytes(),
    );
    let v = error(st, &t, 400, "invalid_request_error");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // Unknown route and model: 404; wrong method: 405; a body over 1 MiB: 413.
    let (st, t) = server.request("GET", "/v1/nothing", b"");
    error(st, &t, 404, "not_found_error");
    let (st, t) = server.request(
        "POST",
        "/v1/completions",
        br#"{"prompt": "A", "model": "gpt-4"}"#,
    );
    error(st, &t, 404, "not_found_error");
    let (st, t) = server.request("GET", "/v1/completions", b"");
    error(st, &t, 405, "invalid_request_error");
    let big = json!({"prompt": "A".repeat(1 << 20)}).to_string();
    let (st, t) = server.request("POST", "/v1/completions", big.as_bytes());
    error(st, &t, 413, "invalid_request_error");
    // Still serving.
    let (status, h) = server.get("/health");
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    let (status, v) = server.post("/v1/completions", &json!({"prompt": "A", "max_tokens": 3}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[test]
fn unseeded_requests_draw_anew_and_a_seed_reproduces() {
    // The library's sampler has a fixed default seed; the server gives each request without
    // `seed` one of its own, as OpenAI clients expect (temperature 1, 24 tokens: three equal
    // draws would be a vanishing coincidence).
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let req = json!({"prompt": "ROMEO:", "max_tokens": 24, "temperature": 1.0});
    let texts: Vec<String> = (0..3)
        .map(|_| {
            let (status, v) = server.post("/v1/completions", &req);
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        texts[0] != texts[1] || texts[1] != texts[2],
        "three unseeded requests gave the same text: {texts:?}"
    );
    let mut seeded = req.clone();
    seeded["seed"] = 42.into();
    let (_, a) = server.post("/v1/completions", &seeded);
    let (_, b) = server.post("/v1/completions", &seeded);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
}

/// The OpenAI fields beyond text: `logprobs` (completions) equal to the log-softmax the
/// engine reports and consistent with the text, `n` choices (seeded: distinct, reproducible;
/// greedy: equal), `logit_bias` changing the greedy token, the prefix cache's
/// `cached_tokens` with the same answer as a server without it, `/metrics` counting all of
/// it, and one JSON log line per request.
#[test]
fn logprobs_n_logit_bias_prefix_cache_metrics_and_json_logs() {
    let dir = common::tempdir();
    let log = dir.path().join("serve.log");
    let Some(server) = Server::start_logging(&["--log-format", "json"], Some(&log)) else {
        return;
    };
    // Logprobs: greedy, so each token is its own list's most likely one.
    let req = json!({"prompt": "ROMEO:", "max_tokens": 5, "temperature": 0, "logprobs": 3});
    let (status, v) = server.post("/v1/completions", &req);
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    let lp = &c["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 5);
    assert_eq!(tokens.concat(), c["text"].as_str().unwrap());
    let mut offset = 0;
    for i in 0..5 {
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), 3);
        let best = top
            .values()
            .map(|x| x.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let own = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(own <= 0.0 && (own - best).abs() < 1e-6, "{lp}");
        assert_eq!(lp["text_offset"][i], offset);
        offset += tokens[i].len();
    }
    // logit_bias: the first greedy token banned, another comes.
    let first = |body: &Value| {
        let (status, v) = server.post("/v1/completions", body);
        assert_eq!(status, 200, "{v}");
        v["choices"][0]["logprobs"]["tokens"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut one = json!({"prompt": "ROMEO:", "max_tokens": 1, "temperature": 0, "logprobs": 0});
    let greedy = first(&one);
    let tok = wgpt::Tokenizer::from_file(&common::repo_root().join("assets/model/tokenizer.json"))
        .unwrap();
    let ids = tok.encode(&greedy).unwrap();
    one["logit_bias"] = ids.iter().map(|id| (id.to_string(), json!(-100))).collect();
    assert_ne!(first(&one), greedy);
    // n: three seeded choices, distinct and reproducible; two greedy ones, equal.
    let req = json!({"prompt": "JULIET:", "max_tokens": 12, "n": 3, "seed": 9, "temperature": 1});
    let (_, a) = server.post("/v1/completions", &req);
    let (_, b) = server.post("/v1/completions", &req);
    let texts = |v: &Value| -> Vec<String> {
        let c = v["choices"].as_array().unwrap();
        assert_eq!(c.len(), 3, "{v}");
        c.iter()
            .enumerate()
            .map(|(i, c)| {
                assert_eq!(c["index"], i);
                c["text"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let ta = texts(&a);
    assert_eq!(ta, texts(&b));
    assert!(ta[0] != ta[1] || ta[1] != ta[2], "{ta:?}");
    assert!((3..=36).contains(&a["usage"]["completion_tokens"].as_u64().unwrap()));
    let greedy2 = json!({"prompt": "JULIET:", "max_tokens": 8, "n": 2, "temperature": 0});
    let (_, g) = server.post("/v1/completions", &greedy2);
    assert_eq!(g["choices"][0]["text"], g["choices"][1]["text"]);
    // n streamed: both choices end, each once.
    let mut s = greedy2.clone();
    s["stream"] = true.into();
    s["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/completions", &s);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut ends = [0, 0];
    let mut streamed_tokens = 0;
    for e in &events[..events.len() - 1] {
        let v = json_of(e);
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            streamed_tokens = n;
        }
        if v["choices"][0]["finish_reason"].is_string() {
            ends[v["choices"][0]["index"].as_u64().unwrap() as usize] += 1;
        }
    }
    assert_eq!(ends, [1, 1]);
    // The prefix cache: a second question after the same long prompt reuses it.
    let doc = "ROMEO: But soft, what light through yonder window breaks? ".repeat(4);
    let ask = |server: &Server, q: &str| {
        let body = json!({"prompt": format!("{doc}{q}"), "max_tokens": 6, "temperature": 0});
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        (
            v["choices"][0]["text"].as_str().unwrap().to_string(),
            cached,
        )
    };
    let n_doc = tok.encode(&doc).unwrap().len() as u64;
    assert_eq!(ask(&server, "JULIET:").1, 0);
    let (warm, cached) = ask(&server, "ROMEO:");
    assert!(cached + 2 >= n_doc && cached > 40, "{cached} of {n_doc}");
    let metrics = server.request("GET", "/metrics", b"").1;
    for want in [
        "wgpt_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 9",
        "wgpt_kv_slots 8",
        "# TYPE wgpt_time_to_first_token_seconds histogram",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    // Sequences: 1 + 1 + 1 + 3 + 3 + 2 + 2 + 1 + 1.
    assert_eq!(value("wgpt_time_to_first_token_seconds_count"), 15.0);
    assert!(value("wgpt_cached_prompt_tokens_total") >= cached as f64);
    let usage = |v: &Value| v["usage"]["completion_tokens"].as_u64().unwrap();
    let generated = 5 + 1 + 1 + usage(&a) + usage(&b) + usage(&g) + streamed_tokens + 12;
    assert_eq!(value("wgpt_generation_tokens_total"), generated as f64);
    drop(server);
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(json_of)
        .filter(|v| v.get("path").is_some())
        .collect();
    assert!(lines.len() >= 10, "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["status"].is_u64() && l["method"].is_string()));
    // Without the prefix cache: nothing cached, the same text.
    let Some(cold) = Server::start(&["--no-prefix-cache"]) else {
        return;
    };
    ask(&cold, "JULIET:");
    assert_eq!(ask(&cold, "ROMEO:"), (warm, 0));
}

/// Chat log-probabilities in their shape; special tokens left out of the text unless
/// `skip_special_tokens` is false, while a stop string still sees them; and a server whose
/// engine cannot be built exits with the reason instead of listening.
#[test]
fn chat_logprobs_special_tokens_and_no_zombie() {
    let Some(_) = common::test_gpu() else { return };
    let model = common::fixture("tiny-llama32-bf16");
    let model = model.to_str().unwrap();
    // 64 sequences of 131072 positions cannot be bound: the server must not start.
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args([
            "serve",
            "--port",
            "0",
            "--max-batch",
            "64",
            "--ctx",
            "131072",
            "-m",
            model,
        ])
        .args(cpu_flag())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("binds at most"), "{stderr}");
    let Some(server) = Server::start(&["-m", model, "--max-batch", "2"]) else {
        return;
    };
    let (status, h) = server.get("/health");
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    let chat = json!({
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2,
    });
    let (status, v) = server.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for e in content {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        assert!(e["bytes"].is_array() && e["token"].is_string());
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
    }
    // <|start_header_id|> (390) forced by a bias: left out, kept when asked, a stop string.
    let forced = |extra: Value| {
        let mut body =
            json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0, "logit_bias": {"390": 100}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        v
    };
    assert_eq!(forced(json!({}))["choices"][0]["text"], "");
    let kept = forced(json!({"skip_special_tokens": false}));
    assert_eq!(
        kept["choices"][0]["text"],
        "<|start_header_id|><|start_header_id|>"
    );
    let stopped = forced(json!({"stop": ["<|start_header_id|>"]}));
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    assert_eq!(stopped["usage"]["completion_tokens"], 1);
}

/// A request whose sequence fails (a prompt token whose embedding is +∞: non-finite
/// logits) gets an error — an error object, or an error event then `[DONE]` when streaming —
/// while the server goes on serving the others (`tests/engine.rs` checks that a failing
/// sequence leaves the one in the same batch unchanged).
#[test]
fn a_failing_request_fails_alone() {
    let dir = common::copy_fixture("tiny-untied-bf16");
    let tok = wgpt::Tokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
    let bad = tok.encode(" the").unwrap()[0];
    common::poison_embedding_row(dir.path(), "transformer.wte.weight", bad as usize);
    let path = dir.path().to_str().unwrap().to_string();
    let Some(server) = Server::start(&["-m", &path, "--max-batch", "2"]) else {
        return;
    };
    let good = json!({
        "prompt": "A", "max_tokens": 40, "temperature": 0, "stream": true,
        "logit_bias": { bad.to_string(): -100 },
    });
    let server = std::sync::Arc::new(server);
    let runner = {
        let server = server.clone();
        std::thread::spawn(move || server.stream("/v1/completions", &good))
    };
    let poisoned = json!({"prompt": "A the", "max_tokens": 5});
    let (status, v) = server.post("/v1/completions", &poisoned);
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"]["code"], "generation_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-finite"),
        "{v}"
    );
    let mut streaming = poisoned.clone();
    streaming["stream"] = true.into();
    let events = server.stream("/v1/completions", &streaming);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(json_of(&events[0])["error"]["code"], "generation_failed");
    let events = runner.join().unwrap();
    let (text, finish, _) = streamed(&events, false);
    assert_eq!(finish, "length");
    assert!(!text.is_empty());
    let (status, h) = server.get("/health");
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
}

/// `response_format`: every output of a JSON schema (strict: no other keys) parses and
/// validates, sampled at temperature 1 from the built-in model, which knows no JSON, and from
/// a SentencePiece vocabulary and a converter-made GGUF's; a `json_object` answer is one JSON
/// object.
#[test]
fn structured_output_parses_and_validates() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 0, "maximum": 99},
            "mood": {"enum": ["happy", "sad"]},
        },
        "required": ["name", "age", "mood"],
        "additionalProperties": false,
    });
    let format = json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}});
    for seed in 0..4 {
        let body = json!({
            "prompt": "ROMEO:", "max_tokens": 80, "temperature": 1, "seed": seed, "n": 2,
            "response_format": format,
        });
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        for c in v["choices"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            assert_eq!(c["finish_reason"], "stop", "{text:?}");
            let o: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
            let o = o.as_object().unwrap();
            assert_eq!(o.len(), 3, "{text}");
            assert!(o["name"].as_str().unwrap().chars().count() <= 6, "{text}");
            assert!((0..=99).contains(&o["age"].as_i64().unwrap()), "{text}");
            assert!(
                ["happy", "sad"].contains(&o["mood"].as_str().unwrap()),
                "{text}"
            );
        }
    }
    // Any object: its strings are unbounded, and the TinyShakespeare model writes verse into
    // the first key until the token limit (a `length` answer, as OpenAI's); a bias toward `}`
    // (token 93), which no free text wants, lets it close the object.
    let body = json!({
        "prompt": "JULIET:", "max_tokens": 60, "temperature": 0,
        "response_format": {"type": "json_object"}, "logit_bias": {"93": 100},
    });
    let (status, v) = server.post("/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{text:?}");
    assert!(
        serde_json::from_str::<Value>(text).unwrap().is_object(),
        "{text}"
    );
    drop(server);
    // Vocabularies as downloaded: a SentencePiece one with byte fallback (`▁`, `<0xNN>`), and
    // the tokenizer of a GGUF file from llama.cpp's converter (Qwen3's byte-level BPE).
    for model in ["tiny-sp-llama-f32", "gguf/tiny-qwen3-f16.gguf"] {
        let path = common::fixture(model);
        let Some(server) = Server::start(&["-m", path.to_str().unwrap()]) else {
            return;
        };
        let body = json!({
            "prompt": "Hello", "max_tokens": 80, "temperature": 1, "seed": 2, "n": 3,
            "response_format": format,
        });
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(status, 200, "{model}: {v}");
        for c in v["choices"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            assert_eq!(c["finish_reason"], "stop", "{model}: {text:?}");
            let o: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{model}: {e}: {text:?}"));
            assert_eq!(o.as_object().unwrap().len(), 3, "{model}: {text}");
            assert!(
                (0..=99).contains(&o["age"].as_i64().unwrap()),
                "{model}: {text}"
            );
        }
    }
}

/// An engine failure ends the server (the library's `wgpt::serve`, in-process, so that the
/// test can destroy the device under it mid-stream): the running stream gets an error event
/// and `[DONE]`, `serve` returns the error (the binary then exits non-zero, as the
/// `--max-batch 64` case above shows for a failure at the start) and the port stops listening:
/// no zombie.
#[test]
fn an_engine_failure_ends_the_server() {
    let Some(gpu) = common::test_gpu() else {
        return;
    };
    let model = wgpt::Model::load_default(&gpu, &wgpt::LoadOptions::default()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = wgpt::ServerOptions::default();
    opts.port = port;
    opts.max_batch = 2;
    let server = std::thread::spawn(move || wgpt::serve(model, &opts));
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        Ok::<_, std::io::Error>(s)
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(mut s) = connect() {
            send(&mut s, "GET", "/health", b"");
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw);
            if parse_response(&raw).0 == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the server never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A long greedy stream (the built-in model's eos, token 0, biased away).
    let body = json!({
        "prompt": "ROMEO:", "max_tokens": 1000, "temperature": 0, "stream": true,
        "logit_bias": {"0": -100},
    });
    let mut s = connect().unwrap();
    send(
        &mut s,
        "POST",
        "/v1/completions",
        body.to_string().as_bytes(),
    );
    let mut reader = BufReader::new(s);
    let mut first = String::new();
    while !first.contains("data: {") {
        first.clear();
        assert!(
            reader.read_line(&mut first).unwrap() > 0,
            "no token streamed"
        );
    }
    gpu.device().destroy();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let data: Vec<&str> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{rest}");
    let error = data.iter().rev().nth(1).map(|d| json_of(d)).unwrap();
    assert!(error["error"]["message"].is_string(), "{error}");
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "the server kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = server.join().unwrap();
    let message = result
        .expect_err("serve returns the engine's error")
        .to_string();
    assert!(message.contains("engine stopped"), "{message}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
