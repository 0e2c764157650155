//! The OpenAI-compatible HTTP server (axum on tokio; feature `server`), what `wgpt serve` runs
//! and an embedder can run too ([`serve`] with [`ServerOptions`]). Requests are checked here
//! and handed to the GPU thread (`worker.rs`) through a channel; its batched engine decodes
//! every running request together. Endpoints: `POST /v1/completions`,
//! `POST /v1/chat/completions` (both also as server-sent events with `stream: true`),
//! `GET /v1/models`, `GET /health`. One log line per request (`log`, `RUST_LOG` in the binary).
//!
//! Layer: the top of the library; uses the engine, the model and the text layer.

mod api;
mod worker;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::Error;
use crate::{Engine, Model};
use api::{ApiError, Head};
use worker::{Event, Job, Shared};

/// Largest request body accepted (413 above).
const MAX_BODY_BYTES: usize = 1 << 20;

/// How [`serve`] listens and batches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Address to listen on (`127.0.0.1`: this machine only; `0.0.0.0`: every interface).
    pub host: String,
    /// TCP port (0: any free port; the one chosen is printed on stdout).
    pub port: u16,
    /// Sequences decoded together, each with its own KV cache (1 ..= [`Engine::MAX_BATCH`]).
    pub max_batch: usize,
    /// Requests that may wait for a free sequence slot; more get 503 until one finishes.
    pub max_queue: usize,
    /// The model's id in responses and `/v1/models`.
    pub model_id: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch: 8,
            max_queue: 64,
            model_id: "wgpt".into(),
        }
    }
}

struct AppState {
    model_id: String,
    created: u64,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    capacity: usize,
    max_batch: usize,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `model` over HTTP until the process ends (or the listener fails): the OpenAI
/// completions and chat completions APIs, streaming, continuous batching of up to
/// `opts.max_batch` sequences on a GPU thread of its own. Prints the address it listens on as
/// one line on stdout (`wgpt serve: listening on http://…`).
pub fn serve(model: Model, opts: &ServerOptions) -> crate::Result<()> {
    if !(1..=Engine::MAX_BATCH).contains(&opts.max_batch) {
        return Err(Error::InvalidInput(format!(
            "at most {} sequences can be decoded together, and at least 1",
            Engine::MAX_BATCH
        )));
    }
    let shared = Arc::new(Shared::default());
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let (max_batch, worker_shared) = (opts.max_batch, shared.clone());
    let worker = std::thread::Builder::new()
        .name("wgpt-gpu".into())
        .spawn(move || worker::run(&model, max_batch, rx, worker_shared))
        .map_err(|e| Error::InvalidInput(format!("cannot start the GPU thread: {e}")))?;
    let state = Arc::new(AppState {
        model_id: opts.model_id.clone(),
        created: now(),
        jobs: std::sync::Mutex::new(tx),
        shared,
        capacity: opts.max_batch + opts.max_queue,
        max_batch: opts.max_batch,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(listen(state.clone(), &opts.host, opts.port));
    drop(state);
    drop(runtime);
    let _ = worker.join();
    result
}

async fn listen(state: Arc<AppState>, host: &str, port: u16) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {host}:{port}: {e}")))?;
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state.clone());
    // The line a script (or a test) reads to learn the port.
    println!(
        "wgpt serve: listening on http://{addr} (model {}, {} sequences at once)",
        state.model_id, state.max_batch
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::InvalidInput(format!("the server stopped: {e}")))
}

/// One log line per request: method, path, status, time to the response head.
async fn log_request(req: HttpRequest, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let res = next.run(req).await;
    log::info!(
        "{method} {path} {} {:.1} ms",
        res.status().as_u16(),
        t.elapsed().as_secs_f64() * 1e3
    );
    res
}

fn error(e: ApiError) -> Response {
    let mut res = (e.status, Json(e.body())).into_response();
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    res
}

async fn not_found(req: HttpRequest) -> Response {
    error(ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_url",
        format!("no route {} {}", req.method(), req.uri().path()),
    ))
}

async fn method_not_allowed(req: HttpRequest) -> Response {
    error(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    ))
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": st.model_id, "object": "model", "created": st.created, "owned_by": "wgpt"}],
    }))
    .into_response()
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let s = &st.shared;
    Json(json!({
        "status": "ok",
        "model": st.model_id,
        "slots": st.max_batch,
        "active": s.active.load(Ordering::SeqCst),
        "queued": s.queued.load(Ordering::SeqCst),
        "cancelled": s.cancelled.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, body, false).await
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, body, true).await
}

async fn handle(st: Arc<AppState>, body: Result<Bytes, BytesRejection>, chat: bool) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(r) => return error(ApiError::bad_request(r.body_text(), None)),
    };
    let req = match api::parse(&body, chat, &st.model_id) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "every sequence slot is taken and the queue is full; retry later",
        )
    };
    if st.shared.in_flight.fetch_add(1, Ordering::SeqCst) >= st.capacity {
        st.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        return error(busy());
    }
    let (stream, include_usage) = (req.stream, req.include_usage);
    let (tx, mut rx) = unbounded_channel();
    let sent = st
        .jobs
        .lock()
        .map(|j| {
            j.send(Job {
                request: req,
                reply: tx,
            })
            .is_ok()
        })
        .unwrap_or(false);
    if !sent {
        st.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        return error(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "worker_stopped",
            "the model worker has stopped",
        ));
    }
    let prompt_tokens = match rx.recv().await {
        Some(Event::Started { prompt_tokens }) => prompt_tokens,
        Some(Event::Failed(e)) => return error(e),
        _ => return error(internal("the model worker stopped")),
    };
    let head = Head {
        id: format!(
            "{}-{:x}",
            if chat { "chatcmpl" } else { "cmpl" },
            request_id()
        ),
        created: now(),
        model: st.model_id.clone(),
        chat,
    };
    if stream {
        return sse(head, rx, prompt_tokens, include_usage);
    }
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done {
                reason,
                completion_tokens,
            }) => {
                let usage = api::usage(prompt_tokens, completion_tokens);
                let body = head.response(&text, api::finish_reason(reason), usage);
                return Json(body).into_response();
            }
            Some(Event::Failed(e)) => return error(e),
            _ => return error(internal("the model worker stopped")),
        }
    }
}

fn internal(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
}

fn request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (now() << 20) ^ n
}

/// What the event stream has left to send.
enum Phase {
    Open,
    Ended,
}

/// The answer as server-sent events: chunks as OpenAI's, `data: [DONE]` last. Dropping the
/// stream (the client went away) drops the receiver, which cancels the sequence.
fn sse(
    head: Head,
    rx: UnboundedReceiver<Event>,
    prompt_tokens: usize,
    include_usage: bool,
) -> Response {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    // Chat streams open with the assistant's role.
    let first = head.chat.then(|| data(head.chunk(Some(""), None, true)));
    let state = (rx, Phase::Open, head);
    let rest = futures_util::stream::unfold(state, move |(mut rx, phase, head)| async move {
        if let Phase::Ended = phase {
            return None;
        }
        let data = |v: Value| SseEvent::default().data(v.to_string());
        let events: Vec<SseEvent> = match rx.recv().await {
            Some(Event::Text(t)) => {
                let e = vec![data(head.chunk(Some(&t), None, false))];
                return Some((e, (rx, Phase::Open, head)));
            }
            Some(Event::Done {
                reason,
                completion_tokens,
            }) => {
                let mut e = vec![data(head.chunk(
                    None,
                    Some(api::finish_reason(reason)),
                    false,
                ))];
                if include_usage {
                    let u = api::usage(prompt_tokens, completion_tokens);
                    e.push(data(head.usage_chunk(u)));
                }
                e.push(SseEvent::default().data("[DONE]"));
                e
            }
            Some(Event::Failed(err)) => {
                vec![data(err.body()), SseEvent::default().data("[DONE]")]
            }
            _ => vec![
                data(internal("the model worker stopped").body()),
                SseEvent::default().data("[DONE]"),
            ],
        };
        Some((events, (rx, Phase::Ended, head)))
    });
    use futures_util::StreamExt;
    let events = futures_util::stream::iter(first)
        .chain(rest.flat_map(futures_util::stream::iter))
        .map(Ok::<_, Infallible>);
    Sse::new(events).into_response()
}
