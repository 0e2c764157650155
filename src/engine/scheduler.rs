//! [`Scheduler`]: admission, queueing, cancellation and the step loop over an [`Engine`], for
//! a thread that owns the GPU and takes requests from others (what `wgpt serve` runs, usable
//! without it). Requests arrive as token ids (tokenizing and chat templates are the caller's,
//! off the GPU thread) through a channel, each with a [`Reply`] that hears its [`Event`]s; a
//! request waits in a bounded queue until a slot is free. A request whose reply is closed
//! (the client went away) is cancelled before the next step. A request for `n` sequences
//! admits the first, and the others once its prompt is in the cache, so that they copy it
//! instead of prefilling it again.
//!
//! A sequence's own failure ends it alone ([`Event::Failed`]); a failed engine step ends every
//! request with [`Event::Failed`] and [`Scheduler::run`] returns the error, so that whoever
//! runs it can stop (a server exits rather than listen without an engine).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::{Engine, SequenceId, SequenceOutput, SequenceParams};
use crate::error::Result;
use crate::generation::StopReason;

/// What a request hears, in order: `Started` (or `Refused`), then for each of its sequences
/// its outputs and `Done` (or `Failed`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Sequence `index` has a slot.
    Started {
        /// Which of the request's sequences (0 ..= n − 1).
        index: usize,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Of them, those the prefix cache served (not prefilled).
        cached_tokens: usize,
    },
    /// A step's output for sequence `index` (a token and its text, which may be empty).
    Output {
        /// Which of the request's sequences.
        index: usize,
        /// The token, its text and log-probabilities.
        output: SequenceOutput,
    },
    /// Sequence `index` finished.
    Done {
        /// Which of the request's sequences.
        index: usize,
        /// Why (never [`StopReason::Error`]: that is [`Event::Failed`]).
        reason: StopReason,
        /// Tokens it generated.
        completion_tokens: usize,
    },
    /// The request was refused before it ran (bad prompt or parameters).
    Refused(String),
    /// Sequence `index` failed (alone, or with the engine).
    Failed {
        /// Which of the request's sequences.
        index: usize,
        /// Why.
        message: String,
    },
}

/// Where a request's events go. `send` returns false once nobody listens.
pub trait Reply: Send {
    /// Delivers an event; false if the receiver is gone.
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver still listens.
    fn is_open(&self) -> bool;
}

impl Reply for std::sync::mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
    fn is_open(&self) -> bool {
        true
    }
}

/// One request: a prompt's token ids, how to generate, how many sequences, where the
/// events go.
pub struct Job {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// How to generate (sequence i > 0 adds i to the seed).
    pub params: SequenceParams,
    /// Independent sequences from the prompt (OpenAI's `n`); sequence i samples with the
    /// seed + i.
    pub n: usize,
    /// Where the events go.
    pub reply: Box<dyn Reply>,
    /// When the request arrived (time to first token counts from here).
    pub arrived: Instant,
}

/// Counters another thread may read (a server's `/health` and `/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests not answered yet: the sender counts a request in before sending it (a
    /// server refuses requests beyond [`Scheduler::capacity`] with it); the scheduler counts it
    /// out once it is answered, refused or cancelled.
    pub in_flight: AtomicUsize,
    /// Sequences in slots.
    pub running: AtomicUsize,
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Requests cancelled because their receiver went away.
    pub cancelled: AtomicUsize,
}

/// What [`Scheduler::run`] reports per step, for metrics: (time to first token of a
/// sequence, in seconds) and (seconds between two tokens of a sequence), and token counts.
pub trait Observer: Send {
    /// A sequence's first token came `ttft` seconds after its request arrived.
    fn first_token(&self, ttft: f64, prompt_tokens: usize, cached_tokens: usize);
    /// A further token came `gap` seconds after the sequence's previous one.
    fn next_token(&self, gap: f64);
    /// A sequence ended with `completion_tokens`.
    fn finished(&self, completion_tokens: usize);
}

/// A request with a slot (some of its sequences may still wait for theirs).
struct Running {
    reply: Box<dyn Reply>,
    prompt: Vec<u32>,
    params: SequenceParams,
    arrived: Instant,
    /// Per sequence: its id once admitted, tokens so far, time of its last token, ended.
    seqs: Vec<SeqState>,
}

#[derive(Default, Clone)]
struct SeqState {
    id: Option<SequenceId>,
    /// Prompt tokens the prefix cache served it.
    cached: usize,
    completion: usize,
    last: Option<Instant>,
    ended: bool,
}

impl Running {
    fn done(&self) -> bool {
        self.seqs.iter().all(|s| s.ended)
    }
}

/// Admission, queueing and the step loop over an engine; see the module docs.
pub struct Scheduler<'m> {
    engine: Engine<'m>,
    max_queue: usize,
    waiting: VecDeque<Job>,
    running: Vec<Running>,
}

impl<'m> Scheduler<'m> {
    /// A scheduler over `engine` that queues at most `max_queue` requests beyond its slots
    /// (the caller refuses more: see [`Counters::in_flight`]).
    pub fn new(engine: Engine<'m>, max_queue: usize) -> Self {
        Scheduler {
            engine,
            max_queue,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<'m> {
        &self.engine
    }

    /// Requests the scheduler holds at most: slots plus the queue.
    pub fn capacity(&self) -> usize {
        self.engine.capacity() + self.max_queue
    }

    /// Runs until `jobs` closes and every request is answered; an engine failure answers
    /// every request with [`Event::Failed`] and is returned.
    pub fn run(
        &mut self,
        jobs: &Receiver<Job>,
        counters: &Counters,
        observer: &dyn Observer,
    ) -> Result<()> {
        loop {
            if self.engine.is_empty() && self.waiting.is_empty() {
                match jobs.recv() {
                    Ok(j) => self.waiting.push_back(j),
                    Err(_) => return Ok(()),
                }
            }
            while let Ok(j) = jobs.try_recv() {
                self.waiting.push_back(j);
            }
            self.drop_closed(counters);
            self.admit(counters);
            counters
                .running
                .store(self.engine.active(), Ordering::SeqCst);
            counters.queued.store(self.waiting.len(), Ordering::SeqCst);
            if self.engine.is_empty() {
                continue;
            }
            let outs = match self.engine.step() {
                Ok(o) => o,
                Err(e) => {
                    self.fail_all(&e.to_string(), counters);
                    return Err(e);
                }
            };
            for out in outs {
                self.deliver(out, counters, observer);
            }
            counters
                .running
                .store(self.engine.active(), Ordering::SeqCst);
        }
    }

    /// Cancels the sequences of requests whose receiver went away, and forgets queued ones.
    fn drop_closed(&mut self, counters: &Counters) {
        let engine = &mut self.engine;
        self.running.retain(|r| {
            if r.reply.is_open() {
                return true;
            }
            for id in r.seqs.iter().filter(|s| !s.ended).filter_map(|s| s.id) {
                engine.cancel(id);
                log::info!("{id}: the client went away; cancelled");
            }
            counters.cancelled.fetch_add(1, Ordering::SeqCst);
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            false
        });
        self.waiting.retain(|j| {
            let open = j.reply.is_open();
            if !open {
                counters.cancelled.fetch_add(1, Ordering::SeqCst);
                counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            open
        });
    }

    /// Gives free slots to the sequences of running requests that wait for their first
    /// sequence's prompt (n > 1), then to queued requests, first come first.
    fn admit(&mut self, counters: &Counters) {
        for r in &mut self.running {
            let first_started = r.seqs[0].completion > 0 || r.seqs[0].ended;
            for i in 1..r.seqs.len() {
                if !first_started || r.seqs[i].id.is_some() || !self.engine.has_free_slot() {
                    continue;
                }
                let mut params = r.params.clone();
                params.sampler.seed = params.sampler.seed.wrapping_add(i as u64);
                match self.engine.add(&r.prompt, params) {
                    Ok(id) => {
                        let cached = self.engine.cached_tokens(id).unwrap_or(0);
                        r.seqs[i].id = Some(id);
                        r.seqs[i].cached = cached;
                        r.reply.send(Event::Started {
                            index: i,
                            prompt_tokens: r.prompt.len(),
                            cached_tokens: cached,
                        });
                    }
                    Err(e) => {
                        r.seqs[i].ended = true;
                        let message = e.to_string();
                        r.reply.send(Event::Failed { index: i, message });
                    }
                }
            }
        }
        self.running.retain(|r| {
            let done = r.done();
            if done {
                counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            !done
        });
        while self.engine.has_free_slot() {
            let Some(mut job) = self.waiting.pop_front() else {
                break;
            };
            match self.engine.add(&job.prompt, job.params.clone()) {
                Ok(id) => {
                    let cached = self.engine.cached_tokens(id).unwrap_or(0);
                    // Counted before the client hears of it (it may ask /health next).
                    counters
                        .running
                        .store(self.engine.active(), Ordering::SeqCst);
                    counters.queued.store(self.waiting.len(), Ordering::SeqCst);
                    job.reply.send(Event::Started {
                        index: 0,
                        prompt_tokens: job.prompt.len(),
                        cached_tokens: cached,
                    });
                    let mut seqs = vec![SeqState::default(); job.n.max(1)];
                    seqs[0].id = Some(id);
                    seqs[0].cached = cached;
                    self.running.push(Running {
                        reply: job.reply,
                        prompt: job.prompt,
                        params: job.params,
                        arrived: job.arrived,
                        seqs,
                    });
                }
                Err(e) => {
                    job.reply.send(Event::Refused(e.to_string()));
                    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Hands one output to its request.
    fn deliver(&mut self, out: SequenceOutput, counters: &Counters, observer: &dyn Observer) {
        let Some(ri) = self
            .running
            .iter()
            .position(|r| r.seqs.iter().any(|s| s.id == Some(out.id)))
        else {
            return;
        };
        let r = &mut self.running[ri];
        let index = r
            .seqs
            .iter()
            .position(|s| s.id == Some(out.id))
            .unwrap_or(0);
        let now = Instant::now();
        let s = &mut r.seqs[index];
        match s.last {
            None => {
                let ttft = now.duration_since(r.arrived).as_secs_f64();
                observer.first_token(ttft, r.prompt.len(), s.cached);
            }
            Some(t) => observer.next_token(now.duration_since(t).as_secs_f64()),
        }
        s.last = Some(now);
        s.completion += out.token.is_some() as usize;
        let finish = out.finish;
        let error = out.error.clone();
        let mut open = r.reply.send(Event::Output { index, output: out });
        if let Some(reason) = finish {
            s.ended = true;
            observer.finished(s.completion);
            let event = match (reason, error) {
                (StopReason::Error, e) => Event::Failed {
                    index,
                    message: e.unwrap_or_else(|| "the sequence failed".into()),
                },
                (reason, _) => Event::Done {
                    index,
                    reason,
                    completion_tokens: s.completion,
                },
            };
            open &= r.reply.send(event);
        }
        if r.done() {
            self.running.remove(ri);
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        } else if !open {
            // Picked up by `drop_closed` before the next step.
            log::debug!("a reply closed mid-request");
        }
    }

    /// Ends every request with `message` (the engine failed).
    fn fail_all(&mut self, message: &str, counters: &Counters) {
        log::error!("an engine step failed: {message}");
        for mut r in self.running.drain(..) {
            for (index, s) in r.seqs.iter().enumerate() {
                if !s.ended {
                    let message = message.to_string();
                    r.reply.send(Event::Failed { index, message });
                }
            }
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        for mut j in self.waiting.drain(..) {
            j.reply
                .send(Event::Refused(format!("the engine stopped: {message}")));
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
