//! The OpenAI-compatible HTTP server (axum on tokio; feature `server`), what `wgpt serve` runs
//! and an embedder can run too ([`serve`] with [`ServerOptions`]). Requests are checked,
//! rendered with the chat template and tokenized here (on the async side, off the GPU
//! thread), then handed to the library's [`Scheduler`] on a GPU thread of its own, whose
//! batched engine decodes every running request together (chunked prefill, prefix cache).
//! Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (both also as server-sent
//! events with `stream: true`), `GET /v1/models`, `GET /health`, `GET /metrics`
//! (Prometheus). One log line per request (`log`; one JSON object per line with
//! [`ServerOptions::log_json`]).
//!
//! The engine is built before the port is bound: a configuration that cannot run is an
//! error, not a listening server without a model. If the engine fails later, every request
//! gets an error, `/health` answers 503, and [`serve`] returns the error (the process exits
//! non-zero, for a supervisor to restart it).
//!
//! Layer: the top of the library; uses the engine, the model and the text layer.

mod api;
mod metrics;
mod structured;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::Error;
use crate::scheduler::{Counters, Event, Job, Reply, Scheduler};
use crate::{Engine, Model, SequenceParams, TokenLogprobs};
use api::{ApiError, Head, Input, Logprobs, Request};
use metrics::Metrics;
use structured::Grammars;

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
    /// Reuse the KV cache of earlier prompts that a new prompt starts with (on by default).
    pub prefix_cache: bool,
    /// One JSON object per request in the log instead of a line of text.
    pub log_json: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch: 8,
            max_queue: 64,
            model_id: "wgpt".into(),
            prefix_cache: true,
            log_json: false,
        }
    }
}

/// Whether the GPU thread runs, and why it stopped.
#[derive(Default)]
struct Health {
    alive: AtomicBool,
    fatal: Mutex<Option<String>>,
    /// Wakes the listener when the GPU thread stops.
    stopped: tokio::sync::Notify,
}

struct AppState {
    model: Arc<Model>,
    grammars: Arc<Grammars>,
    model_id: String,
    created: u64,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    capacity: usize,
    max_batch: usize,
    log_json: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `model` over HTTP until the process ends, the listener fails or the engine fails:
/// the OpenAI completions and chat completions APIs, streaming, continuous batching of up to
/// `opts.max_batch` sequences on a GPU thread of its own. The engine (the KV cache of every
/// slot) is built first: an error there is returned before anything listens. Prints the
/// address it listens on as one line on stdout (`wgpt serve: listening on http://…`).
pub fn serve(model: Model, opts: &ServerOptions) -> crate::Result<()> {
    if !(1..=Engine::MAX_BATCH).contains(&opts.max_batch) {
        return Err(Error::InvalidInput(format!(
            "at most {} sequences can be decoded together, and at least 1",
            Engine::MAX_BATCH
        )));
    }
    let model = Arc::new(model);
    let counters = Arc::new(Counters::default());
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<crate::Result<()>>(1);
    let worker = {
        let (model, counters, metrics, health) = (
            model.clone(),
            counters.clone(),
            metrics.clone(),
            health.clone(),
        );
        let (max_batch, max_queue, prefix_cache) =
            (opts.max_batch, opts.max_queue, opts.prefix_cache);
        std::thread::Builder::new()
            .name("wgpt-gpu".into())
            .spawn(move || {
                let mut engine = match Engine::new(&model, max_batch) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                engine.set_prefix_cache(prefix_cache);
                health.alive.store(true, Ordering::SeqCst);
                let _ = ready_tx.send(Ok(()));
                let mut scheduler = Scheduler::new(engine, max_queue);
                let result = scheduler.run(&rx, &counters, &*metrics);
                health.alive.store(false, Ordering::SeqCst);
                if let Err(e) = result {
                    if let Ok(mut f) = health.fatal.lock() {
                        *f = Some(e.to_string());
                    }
                }
                health.stopped.notify_one();
            })
            .map_err(|e| Error::InvalidInput(format!("cannot start the GPU thread: {e}")))?
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = worker.join();
            return Err(e);
        }
        Err(_) => {
            let _ = worker.join();
            return Err(Error::InvalidInput(
                "the GPU thread ended at its start".into(),
            ));
        }
    }
    let state = Arc::new(AppState {
        model,
        grammars: Arc::new(Grammars::new()),
        model_id: opts.model_id.clone(),
        created: now(),
        jobs: Mutex::new(tx),
        counters,
        metrics,
        health: health.clone(),
        capacity: opts.max_batch + opts.max_queue,
        max_batch: opts.max_batch,
        log_json: opts.log_json,
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
    let fatal = health.fatal.lock().ok().and_then(|mut f| f.take());
    match fatal {
        Some(message) => Err(Error::Gpu {
            message: format!("the engine stopped: {message}"),
            source: None,
        }),
        None => result,
    }
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
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_request,
        ))
        .with_state(state.clone());
    // The line a script (or a test) reads to learn the port.
    println!(
        "wgpt serve: listening on http://{addr} (model {}, {} sequences at once)",
        state.model_id, state.max_batch
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let health = state.health.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { health.stopped.notified().await })
        .await
        .map_err(|e| Error::InvalidInput(format!("the server stopped: {e}")))
}

/// One log line per request (method, path, status, time to the response head), and the
/// request counter of `/metrics`.
async fn log_request(State(st): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    st.metrics.request(&path, status);
    if st.log_json {
        let line = json!({
            "time": now(), "method": method.as_str(), "path": path, "status": status,
            "ms": (ms * 10.0).round() / 10.0,
        });
        log::info!(target: "wgpt::server::request", "{line}");
    } else {
        log::info!("{method} {path} {status} {ms:.1} ms");
    }
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

/// `ok` with the slots' state while the GPU thread runs; 503 with the reason once it stopped.
async fn health(State(st): State<Arc<AppState>>) -> Response {
    let c = &st.counters;
    if !st.health.alive.load(Ordering::SeqCst) {
        let reason = st.health.fatal.lock().ok().and_then(|f| f.clone());
        let body = json!({
            "status": "error",
            "model": st.model_id,
            "error": reason.unwrap_or_else(|| "the model worker has stopped".into()),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({
        "status": "ok",
        "model": st.model_id,
        "slots": st.max_batch,
        "active": c.running.load(Ordering::SeqCst),
        "queued": c.queued.load(Ordering::SeqCst),
        "cancelled": c.cancelled.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    let body = st.metrics.render(&st.counters, st.max_batch);
    let mut res = body.into_response();
    res.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
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

/// A request's events, into the async side.
struct Events(UnboundedSender<Event>);

impl Reply for Events {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_open(&self) -> bool {
        !self.0.is_closed()
    }
}

/// The prompt's token ids and the sequence parameters of a checked request (the chat
/// rendered with the model's template): run off the async threads, never on the GPU thread.
fn prepare(
    model: &Model,
    grammars: &Grammars,
    req: &Request,
) -> Result<(Vec<u32>, SequenceParams), ApiError> {
    let bad = |e: crate::Error| ApiError::bad_request(e.to_string(), None);
    let text = match &req.input {
        Input::Text(t) => t.clone(),
        Input::Chat(messages) => {
            let template = model.chat_template().ok_or_else(|| {
                ApiError::bad_request(
                    "this model has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja); use /v1/completions",
                    Some("messages"),
                )
            })?;
            template
                .render_with(messages, true, &req.template_kwargs)
                .map_err(bad)?
        }
    };
    let tok = model
        .tokenizer()
        .ok_or_else(|| ApiError::bad_request("the model has no tokenizer", None))?;
    // A chat template's text holds its BOS; a completion prompt gets the tokenizer's specials.
    let ids = match req.input {
        Input::Chat(_) => tok.encode(&text),
        _ => tok.encode_with_specials(&text),
    }
    .map_err(bad)?;
    let (n_ctx, vocab) = (model.config().n_ctx, model.config().vocab_size);
    let field = if matches!(req.input, Input::Chat(_)) {
        "messages"
    } else {
        "prompt"
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty", Some(field)));
    }
    if ids.len() > n_ctx {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad_request(
                format!(
                    "the prompt has {} tokens but the context in use holds {n_ctx} (wgpt serve --ctx); shorten it",
                    ids.len()
                ),
                Some(field),
            )
        });
    }
    if let Some((t, _)) = req.logit_bias.iter().find(|(t, _)| *t as usize >= vocab) {
        return Err(ApiError::bad_request(
            format!("`logit_bias` names token {t}, outside the vocabulary of {vocab}"),
            Some("logit_bias"),
        ));
    }
    let sampler = req.sampler.clone().with_logit_bias(req.logit_bias.clone());
    let mut params = SequenceParams::new(sampler, req.max_tokens.unwrap_or(n_ctx))
        .with_stop(req.stop.iter().cloned())
        .with_skip_special_tokens(req.skip_special_tokens);
    params.logprobs = req.logprobs;
    if let Some(schema) = &req.json_schema {
        let c = grammars
            .json(model, schema)
            .map_err(|m| ApiError::bad_request(m, Some("response_format")))?;
        params.constraint = Some(c);
    }
    Ok((ids, params))
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
    let arrived = Instant::now();
    let req = match api::parse(&body, chat, &st.model_id) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let (model, grammars) = (st.model.clone(), st.grammars.clone());
    let prepared =
        tokio::task::spawn_blocking(move || prepare(&model, &grammars, &req).map(|p| (req, p)));
    let (req, (prompt, params)) = match prepared.await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error(e),
        Err(_) => return error(internal("preparing the prompt failed")),
    };
    if !st.health.alive.load(Ordering::SeqCst) {
        return error(worker_stopped());
    }
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "every sequence slot is taken and the queue is full; retry later",
        )
    };
    let c = &st.counters;
    if c.in_flight.fetch_add(1, Ordering::SeqCst) >= st.capacity {
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        return error(busy());
    }
    let (stream, include_usage, n) = (req.stream, req.include_usage, req.n);
    let (tx, mut rx) = unbounded_channel();
    let job = Job {
        prompt,
        params,
        n,
        reply: Box::new(Events(tx)),
        arrived,
    };
    let sent = st.jobs.lock().map(|j| j.send(job).is_ok()).unwrap_or(false);
    if !sent {
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        return error(worker_stopped());
    }
    let (prompt_tokens, cached_tokens) = match rx.recv().await {
        Some(Event::Started {
            prompt_tokens,
            cached_tokens,
            ..
        }) => (prompt_tokens, cached_tokens),
        Some(Event::Refused(m)) => return error(ApiError::bad_request(m, None)),
        Some(Event::Failed { message, .. }) => return error(sequence_failed(message)),
        _ => return error(worker_stopped()),
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
    let answer = Answer {
        head,
        model: st.model.clone(),
        n,
        logprobs: req.logprobs.is_some(),
        prompt_tokens,
        cached_tokens,
        choices: vec![Choice::default(); n],
    };
    if stream {
        return sse(answer, rx, include_usage);
    }
    collect(answer, rx).await
}

fn internal(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
}

fn worker_stopped() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "worker_stopped",
        "the model worker has stopped",
    )
}

/// A sequence that failed on its own (or with the engine).
fn sequence_failed(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generation_failed",
        message,
    )
}

fn request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (now() << 20) ^ n
}

/// One choice so far.
#[derive(Default, Clone)]
struct Choice {
    text: String,
    tokens: Vec<(u32, TokenLogprobs)>,
    finish: Option<&'static str>,
    completion: usize,
    /// Bytes of text streamed so far (completions' `text_offset`).
    streamed: usize,
}

/// What a response is built from: its head, the model (for token texts), the choices.
struct Answer {
    head: Head,
    model: Arc<Model>,
    n: usize,
    logprobs: bool,
    prompt_tokens: usize,
    cached_tokens: usize,
    choices: Vec<Choice>,
}

impl Answer {
    fn piece(&self) -> impl Fn(u32) -> Vec<u8> + '_ {
        move |id| {
            self.model
                .tokenizer()
                .map(|t| t.token_piece(id))
                .unwrap_or_default()
        }
    }

    /// The log-probabilities of `tokens` of a choice whose text so far has `offset` bytes.
    fn logprobs_json(&self, tokens: &[(u32, TokenLogprobs)], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let piece = self.piece();
        let lp = Logprobs { piece: &piece };
        match self.head.chat {
            true => lp.chat(tokens),
            false => lp.completion(tokens, offset),
        }
    }

    fn usage(&self) -> Value {
        let completion = self.choices.iter().map(|c| c.completion).sum();
        api::usage(self.prompt_tokens, completion, self.cached_tokens)
    }

    fn all_done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }
}

/// The whole answer of a request that does not stream.
async fn collect(mut a: Answer, mut rx: UnboundedReceiver<Event>) -> Response {
    loop {
        match rx.recv().await {
            Some(Event::Started { .. }) => {}
            Some(Event::Output { index, output }) => {
                let c = &mut a.choices[index.min(a.n - 1)];
                c.text.push_str(&output.text);
                if let (Some(t), Some(lp)) = (output.token, output.logprobs) {
                    c.tokens.push((t, lp));
                }
            }
            Some(Event::Done {
                index,
                reason,
                completion_tokens,
            }) => {
                let c = &mut a.choices[index.min(a.n - 1)];
                c.finish = Some(api::finish_reason(reason));
                c.completion = completion_tokens;
                if a.all_done() {
                    let choices = (0..a.n)
                        .map(|i| {
                            let c = &a.choices[i];
                            let lp = a.logprobs_json(&c.tokens, 0);
                            a.head.choice(i, &c.text, c.finish.unwrap_or("stop"), lp)
                        })
                        .collect();
                    return Json(a.head.response(choices, a.usage())).into_response();
                }
            }
            Some(Event::Failed { message, .. }) => return error(sequence_failed(message)),
            Some(Event::Refused(m)) => return error(ApiError::bad_request(m, None)),
            _ => return error(worker_stopped()),
        }
    }
}

/// The answer as server-sent events: chunks as OpenAI's (each with its choice's index),
/// `data: [DONE]` last; a failure is an error event, then `[DONE]`. Dropping the stream (the
/// client went away) drops the receiver, which cancels the request's sequences.
fn sse(answer: Answer, rx: UnboundedReceiver<Event>, include_usage: bool) -> Response {
    fn data(v: Value) -> SseEvent {
        SseEvent::default().data(v.to_string())
    }
    fn done() -> SseEvent {
        SseEvent::default().data("[DONE]")
    }
    // Chat streams open each choice with the assistant's role.
    fn role(a: &Answer, i: usize) -> SseEvent {
        data(a.head.chunk(i, Some(""), None, true, Value::Null))
    }
    let first = answer.head.chat.then(|| role(&answer, 0));
    let rest = futures_util::stream::unfold(Some((rx, answer)), move |state| async move {
        let (mut rx, mut a) = state?;
        let events: Vec<SseEvent> = match rx.recv().await {
            Some(Event::Started { index, .. }) => {
                a.head.chat.then(|| role(&a, index)).into_iter().collect()
            }
            Some(Event::Output { index, output }) => {
                let i = index.min(a.n - 1);
                let tokens: Vec<_> = output.token.zip(output.logprobs).into_iter().collect();
                let lp = a.logprobs_json(&tokens, a.choices[i].streamed);
                a.choices[i].streamed += output.text.len();
                match output.text.is_empty() && lp.is_null() {
                    true => Vec::new(),
                    false => vec![data(a.head.chunk(i, Some(&output.text), None, false, lp))],
                }
            }
            Some(Event::Done {
                index,
                reason,
                completion_tokens,
            }) => {
                let i = index.min(a.n - 1);
                let finish = api::finish_reason(reason);
                a.choices[i].finish = Some(finish);
                a.choices[i].completion = completion_tokens;
                let mut e = vec![data(a.head.chunk(
                    i,
                    None,
                    Some(finish),
                    false,
                    Value::Null,
                ))];
                if a.all_done() {
                    if include_usage {
                        e.push(data(a.head.usage_chunk(a.usage())));
                    }
                    e.push(done());
                    return Some((e, None));
                }
                e
            }
            Some(Event::Failed { message, .. }) => {
                return Some((vec![data(sequence_failed(message).body()), done()], None))
            }
            Some(Event::Refused(m)) => {
                let e = ApiError::bad_request(m, None);
                return Some((vec![data(e.body()), done()], None));
            }
            None => return Some((vec![data(worker_stopped().body()), done()], None)),
        };
        Some((events, Some((rx, a))))
    });
    use futures_util::StreamExt;
    let events = futures_util::stream::iter(first)
        .chain(rest.flat_map(futures_util::stream::iter))
        .map(Ok::<_, Infallible>);
    Sse::new(events).into_response()
}
