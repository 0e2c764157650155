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
        common::test_gpu()?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["serve", "--port", "0"])
            .args(cpu_flag())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
    assert_eq!(usage.unwrap(), v["usage"]);
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
        (json!({"prompt": "A", "n": 2}), "n"),
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
