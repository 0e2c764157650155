//! The GPU thread of `wgpt serve`: owns the model and a batched [`Engine`], takes jobs from a
//! channel, queues them until a slot is free, runs one engine step at a time over every
//! running sequence and sends each job its events. A job whose receiver is gone (the client
//! disconnected) is cancelled and its slot freed before the next step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use crate::{Engine, Model, SequenceId, SequenceParams, StopReason};
use axum::http::StatusCode;
use tokio::sync::mpsc::UnboundedSender;

use super::api::{ApiError, Input, Request};

/// What a job hears from the worker: `Started` or `Failed` first, then tokens and `Done`.
#[derive(Debug)]
pub enum Event {
    /// Admitted into a slot (the prompt is valid).
    Started { prompt_tokens: usize },
    /// New text (one generated token, or text held back at the end).
    Text(String),
    /// Finished; `completion_tokens` generated.
    Done {
        reason: StopReason,
        completion_tokens: usize,
    },
    /// Refused (bad prompt) or failed.
    Failed(ApiError),
}

pub struct Job {
    pub request: Request,
    pub reply: UnboundedSender<Event>,
}

/// Counters the HTTP side reads: jobs not finished (running or queued), running, queued,
/// and sequences cancelled because their client went away.
#[derive(Default)]
pub struct Shared {
    pub in_flight: AtomicUsize,
    pub active: AtomicUsize,
    pub queued: AtomicUsize,
    pub cancelled: AtomicUsize,
}

struct Running {
    reply: UnboundedSender<Event>,
    completion: usize,
}

/// Runs until the job channel closes.
pub fn run(model: &Model, max_batch: usize, jobs: Receiver<Job>, shared: Arc<Shared>) {
    let mut engine = match Engine::new(model, max_batch) {
        Ok(e) => e,
        Err(e) => {
            log::error!("cannot start the engine: {e}");
            return;
        }
    };
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut running: HashMap<SequenceId, Running> = HashMap::new();
    let done = |shared: &Shared| {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    };
    loop {
        if engine.is_empty() && waiting.is_empty() {
            match jobs.recv() {
                Ok(j) => waiting.push_back(j),
                Err(_) => return,
            }
        }
        while let Ok(j) = jobs.try_recv() {
            waiting.push_back(j);
        }
        // Clients that went away: their sequences end now and free their slots.
        running.retain(|id, r| {
            if r.reply.is_closed() {
                engine.cancel(*id);
                log::info!("{id}: client disconnected; cancelled");
                shared.cancelled.fetch_add(1, Ordering::SeqCst);
                done(&shared);
                false
            } else {
                true
            }
        });
        waiting.retain(|j| {
            let open = !j.reply.is_closed();
            if !open {
                done(&shared);
            }
            open
        });
        while engine.has_free_slot() {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            match admit(&mut engine, model, &job.request) {
                Ok((id, prompt_tokens)) => {
                    // Counted before the client hears of it (it may ask /health next).
                    shared.active.store(engine.active(), Ordering::SeqCst);
                    shared.queued.store(waiting.len(), Ordering::SeqCst);
                    let _ = job.reply.send(Event::Started { prompt_tokens });
                    let r = Running {
                        reply: job.reply,
                        completion: 0,
                    };
                    running.insert(id, r);
                }
                Err(e) => {
                    let _ = job.reply.send(Event::Failed(e));
                    done(&shared);
                }
            }
        }
        shared.active.store(engine.active(), Ordering::SeqCst);
        shared.queued.store(waiting.len(), Ordering::SeqCst);
        if engine.is_empty() {
            continue;
        }
        let outs = match engine.step() {
            Ok(o) => o,
            Err(e) => {
                log::error!("a decode step failed: {e}");
                for (id, r) in running.drain() {
                    engine.cancel(id);
                    let err = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "gpu_error",
                        e.to_string(),
                    );
                    let _ = r.reply.send(Event::Failed(err));
                    done(&shared);
                }
                continue;
            }
        };
        for out in outs {
            let Some(r) = running.get_mut(&out.id) else {
                continue;
            };
            r.completion += out.token.is_some() as usize;
            let sent = out.text.is_empty() || r.reply.send(Event::Text(out.text)).is_ok();
            if let Some(reason) = out.finish {
                let _ = r.reply.send(Event::Done {
                    reason,
                    completion_tokens: r.completion,
                });
                running.remove(&out.id);
                done(&shared);
            } else if !sent {
                engine.cancel(out.id);
                running.remove(&out.id);
                log::info!("{}: client disconnected; cancelled", out.id);
                shared.cancelled.fetch_add(1, Ordering::SeqCst);
                done(&shared);
            }
        }
        shared.active.store(engine.active(), Ordering::SeqCst);
    }
}

/// The prompt's tokens (a chat rendered with the model's template) into a slot.
fn admit(
    engine: &mut Engine,
    model: &Model,
    req: &Request,
) -> Result<(SequenceId, usize), ApiError> {
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
    let n_ctx = model.config().n_ctx;
    if ids.len() > n_ctx {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad_request(
                format!(
                    "the prompt has {} tokens but the context in use holds {n_ctx} (wgpt serve --ctx); shorten it",
                    ids.len()
                ),
                Some(if matches!(req.input, Input::Chat(_)) {
                    "messages"
                } else {
                    "prompt"
                }),
            )
        });
    }
    let params = SequenceParams::new(req.sampler.clone(), req.max_tokens.unwrap_or(n_ctx))
        .with_stop(req.stop.iter().cloned());
    let id = engine.add(&ids, params).map_err(bad)?;
    Ok((id, ids.len()))
}
