//! [`Session`]: one conversation with a model. It owns the KV cache and the activations and
//! runs prefill and decode steps: logits read back, or greedy steps whose argmax runs on the
//! GPU and that are queued ahead. Text generation on top of it is in `generation.rs`.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::kernels::Step;
use crate::kernels::{winner, Profiling, Recorder, ARGMAX_BYTES};
use crate::model::forward::Plan;
use crate::model::Model;

/// What a forward step reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readout {
    /// The logits of the requested rows.
    Logits,
    /// Only the argmax of the last row's logits, found on the GPU (greedy decoding), copied
    /// to `winner[slot]`.
    Argmax(usize),
}

/// A greedy decode step submitted before the caller asked for it (see
/// [`Session::decode_argmax`]). It feeds the winner the step before left in `tokens[0]`.
struct Ahead {
    /// The position it runs at.
    pos: usize,
    /// The token it feeds: the step before's winner, as read back.
    token: u32,
    /// The `winner` buffer it copies its result to.
    slot: usize,
    submission: wgpu::SubmissionIndex,
}

/// A step's result as handed to `Session::run`'s callback.
enum Out<'a> {
    Logits(&'a [f32]),
    Token(u32),
}

/// Host (CPU) time spent in forward steps, summed since the last
/// [`Session::take_host_times`]: where a step's wall time goes besides the GPU kernels.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct HostTimes {
    /// Forward submits (one per batch of at most `max_batch` tokens, plus one per further
    /// block of LM-head rows).
    pub steps: usize,
    /// Writing the step uniform and recording the dispatches (nothing to record for a decode
    /// step whose commands were recorded ahead); for `decode_argmax`, also submitting this
    /// step (unless it was queued) and the one queued after it.
    pub encode: Duration,
    /// From the submit until the GPU is done and the logits (if any) or the argmax winner are
    /// mapped and copied out: the GPU's run, the copy to the staging buffer and the mapping (a
    /// decode step records the next one's commands meanwhile).
    pub wait: Duration,
    /// Checking the logits for non-finite values and handing them to the caller (timestamp
    /// read-back when profiling is not counted).
    pub after: Duration,
    /// `decode_argmax` steps that found their commands already submitted by the step before.
    pub queued: usize,
}

impl std::ops::AddAssign for HostTimes {
    fn add_assign(&mut self, o: HostTimes) {
        self.steps += o.steps;
        self.encode += o.encode;
        self.wait += o.wait;
        self.after += o.after;
        self.queued += o.queued;
    }
}

impl HostTimes {
    /// Adds one submit: recorded from `encode` to `wait`, done on the GPU by `mapped`, and
    /// checked from `checks` (if it returned logits) until now.
    fn add(&mut self, encode: Instant, wait: Instant, mapped: Instant, checks: Option<Instant>) {
        self.steps += 1;
        self.encode += wait - encode;
        self.wait += mapped - wait;
        if let Some(c) = checks {
            self.after += c.elapsed();
        }
    }
}

/// A model's KV cache and working buffers: one conversation.
///
/// Every method that runs the model appends to the cache; [`Session::reset`] empties it.
/// [`Session::generate`] starts a new text, [`Session::generate_continue`] goes on after what
/// the cache holds (a multi-turn caller feeds only the new turn).
pub struct Session<'m> {
    model: &'m Model,
    plan: Plan,
    pos: usize,
    /// The tokens in the cache (`pos` of them).
    history: Vec<u32>,
    /// The last token a generation returned, not yet in the cache: a continued generation
    /// feeds it first. Any other call that runs the model drops it.
    pub(crate) pending: Option<u32>,
    bytes: Vec<u8>,
    profiling: Profiling,
    host: HostTimes,
    /// The next single-token step's commands, recorded ahead (see `run`), and what they read
    /// back.
    next_decode: Option<(Readout, wgpu::CommandBuffer)>,
    /// A greedy decode step already submitted (see `decode_argmax`).
    ahead: Option<Ahead>,
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model) -> Result<Self> {
        model.gpu.scoped(|| Self::new_scoped(model))
    }

    fn new_scoped(model: &'m Model) -> Result<Self> {
        let plan = Plan::new(
            &model.gpu,
            &model.kernels,
            &model.config,
            &model.weights,
            model.max_batch(),
            model.logit_rows(),
            None,
        )?;
        model.gpu.check()?;
        Ok(Session {
            model,
            plan,
            pos: 0,
            history: Vec::new(),
            pending: None,
            bytes: Vec::new(),
            profiling: Profiling::default(),
            host: HostTimes::default(),
            next_decode: None,
            ahead: None,
        })
    }

    /// Runs one small batch and one single-token step so that the driver compiles every
    /// pipeline now (lavapipe compiles on first use), then empties the cache. Timings taken
    /// afterwards measure inference only.
    pub fn warm_up(&mut self) -> Result<()> {
        let n = self.model.config.n_ctx.min(9);
        self.reset();
        if n > 1 {
            self.forward(&vec![0; n - 1])?;
        }
        self.forward(&[0])?;
        if self.model.kernels.argmax_on_gpu() && n > 2 {
            self.forward_argmax(&[0])?;
        }
        self.reset();
        Ok(())
    }

    /// Times every dispatch with GPU timestamp queries from now on (one compute pass per
    /// dispatch, so slightly slower). Returns false when the adapter has no timestamps.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        self.profiling.enable(&self.model.gpu)
    }

    /// (label, GPU nanoseconds) for every dispatch since the last call; the label is the
    /// kernel, followed by the layer for the linear layers (`matvec c_attn`).
    pub fn take_profile(&mut self) -> Vec<(String, f64)> {
        self.profiling.take()
    }

    /// Host time of the forward steps since the last call.
    pub fn take_host_times(&mut self) -> HostTimes {
        std::mem::take(&mut self.host)
    }

    fn collect_profile(&mut self) -> Result<()> {
        self.profiling.collect(&self.model.gpu)
    }

    /// Tokens in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The token ids in the cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.history
    }

    /// Empties the cache (the buffers are kept).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.history.clear();
        self.pending = None;
        self.ahead = None;
    }

    /// Empties the cache, then treats its first `n` positions as filled without computing them:
    /// their keys and values are whatever the buffers hold, and the history holds token 0 for
    /// each. The next step runs at position `n`. For timing decode at a depth (`bench
    /// --depth`), where the cost does not depend on the cached values; never for text.
    pub fn assume_filled(&mut self, n: usize) -> Result<()> {
        let n_ctx = self.model.config.n_ctx;
        if n >= n_ctx {
            return Err(Error::InvalidInput(format!(
                "a depth of {n} needs a context above it (the context is {n_ctx})"
            )));
        }
        self.reset();
        self.pos = n;
        self.history.resize(n, 0);
        Ok(())
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidInput("no tokens to process".into()));
        }
        let n_ctx = self.model.config.n_ctx;
        if self.pos + tokens.len() > n_ctx {
            return Err(Error::InvalidInput(format!(
                "{} tokens after {} cached exceed the context of {n_ctx} tokens",
                tokens.len(),
                self.pos
            )));
        }
        let v = self.model.config.vocab_size;
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(Error::InvalidInput(format!(
                "token id {t} is outside the vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// Runs `tokens` through the model, appending them to the cache, and returns the logits
    /// of the last one (vocab_size values).
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let model = self.model;
        model.gpu.scoped(|| self.forward_logits(tokens))
    }

    fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check_tokens(tokens)?;
        let mut last = Vec::new();
        let n = tokens.len();
        self.run(tokens, Some(n - 1..n), Readout::Logits, |_, out| {
            if let Out::Logits(l) = out {
                last = l.to_vec();
            }
            Ok(())
        })?;
        Ok(last)
    }

    /// Like [`Session::forward`] but returns only the index of the largest logit of the last
    /// token (the first on ties, as [`crate::sampler::argmax`]), found on the GPU: greedy
    /// decoding reads back 8 bytes per step instead of the vocabulary's logits. Fails like
    /// `forward` when a logit is not finite. With the barrier-free kernels (software adapters)
    /// it reads the logits and scans them on the CPU, which is faster there.
    pub fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        let model = self.model;
        model.gpu.scoped(|| self.forward_argmax_scoped(tokens))
    }

    fn forward_argmax_scoped(&mut self, tokens: &[u32]) -> Result<u32> {
        if !self.model.kernels.argmax_on_gpu() {
            return Ok(crate::sampler::argmax(&self.forward_logits(tokens)?));
        }
        let mut best = 0;
        let n = tokens.len();
        self.run(
            tokens,
            Some(n.saturating_sub(1)..n),
            Readout::Argmax(0),
            |_, out| {
                if let Out::Token(id) = out {
                    best = id;
                }
                Ok(())
            },
        )?;
        Ok(best)
    }

    /// One greedy decode step: feeds `token` and returns the argmax of its logits, like
    /// `forward_argmax(&[token])`. With `queue_next`, the step after it is submitted before
    /// this one's result is read: it feeds the winner this step leaves on the GPU, so the GPU
    /// starts on it without waiting for the host to read the result and submit again. The next
    /// call uses it when it feeds the token this call returned at the following position (as
    /// greedy decoding does); any other call discards it (its GPU work is then wasted, and
    /// what it wrote to the cache at that position is overwritten). With the barrier-free
    /// kernels it is `forward_argmax(&[token])` and queues nothing (faster on lavapipe).
    pub fn decode_argmax(&mut self, token: u32, queue_next: bool) -> Result<u32> {
        let model = self.model;
        model
            .gpu
            .scoped(|| self.decode_argmax_scoped(token, queue_next))
    }

    fn decode_argmax_scoped(&mut self, token: u32, queue_next: bool) -> Result<u32> {
        if !self.model.kernels.argmax_on_gpu() {
            return self.forward_argmax_scoped(&[token]);
        }
        self.check_tokens(&[token])?;
        self.pending = None;
        let gpu = &self.model.gpu;
        let t_encode = Instant::now();
        let (slot, submission) = match self.ahead.take() {
            Some(a) if a.pos == self.pos && a.token == token => {
                self.host.queued += 1;
                (a.slot, a.submission)
            }
            _ => {
                gpu.queue
                    .write_buffer(&self.plan.act.tokens, 0, bytemuck::bytes_of(&token));
                self.write_step(1, self.pos, 0, 1);
                let cmd = self.record(1, 1, true, Readout::Argmax(0));
                (0, gpu.queue.submit([cmd]))
            }
        };
        // Timestamp queries serve one submit at a time, so profiling runs steps one by one.
        let n_ctx = self.model.config.n_ctx;
        if queue_next && self.pos + 1 < n_ctx && !self.profiling.is_on() {
            self.write_step(1, self.pos + 1, 0, 1);
            let next = 1 - slot;
            let cmd = self.record(1, 1, true, Readout::Argmax(next));
            self.ahead = Some(Ahead {
                pos: self.pos + 1,
                token: u32::MAX, // known once this step's result is read
                slot: next,
                submission: gpu.queue.submit([cmd]),
            });
        }
        let t_wait = Instant::now();
        let read = gpu.read_back(
            &self.plan.act.winner[slot],
            8,
            &mut self.bytes,
            Some(submission),
        );
        let t_mapped = Instant::now();
        let mut t_checks = t_mapped;
        let id = read.and_then(|()| {
            self.collect_profile()?;
            t_checks = Instant::now();
            self.read_winner(self.pos)
        });
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                self.ahead = None;
                return Err(e);
            }
        };
        if let Some(a) = &mut self.ahead {
            a.token = id;
        }
        self.pos += 1;
        self.history.push(token);
        self.host.add(t_encode, t_wait, t_mapped, Some(t_checks));
        Ok(id)
    }

    /// The argmax winner just read back into `bytes`; a non-finite logit at `position` is an
    /// error.
    fn read_winner(&self, position: usize) -> Result<u32> {
        let best: [u32; 2] = bytemuck::pod_read_unaligned(&self.bytes[..8]);
        winner(best).ok_or(Error::NonFinite { position })
    }

    /// Writes the step uniform for the next submit.
    fn write_step(&self, n_tokens: usize, pos: usize, row0: usize, n_rows: usize) {
        let step = Step {
            n_tokens: n_tokens as u32,
            pos: pos as u32,
            row0: row0 as u32,
            n_rows: n_rows as u32,
        };
        self.model
            .gpu
            .queue
            .write_buffer(&self.plan.act.step, 0, bytemuck::bytes_of(&step));
    }

    /// Like [`Session::forward`] but hands the logits of every position to `f(index, logits)`,
    /// a block at a time (perplexity).
    pub fn forward_each(
        &mut self,
        tokens: &[u32],
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let model = self.model;
        model.gpu.scoped(|| {
            self.run(tokens, None, Readout::Logits, |i, out| match out {
                Out::Logits(l) => f(i, l),
                Out::Token(_) => Ok(()),
            })
        })
    }

    /// Processes `tokens` in batches; `want` limits which positions' logits are read (all when
    /// None); `readout` = Argmax needs `want` to be the last position alone.
    fn run(
        &mut self,
        tokens: &[u32],
        want: Option<std::ops::Range<usize>>,
        readout: Readout,
        mut f: impl FnMut(usize, Out<'_>) -> Result<()>,
    ) -> Result<()> {
        self.check_tokens(tokens)?;
        self.ahead = None;
        self.pending = None;
        let gpu = &self.model.gpu;
        let v = self.model.config.vocab_size;
        let mut done = 0;
        for batch in tokens.chunks(self.plan.max_batch) {
            let t = batch.len();
            let rows = match &want {
                Some(r) => r.start.max(done)..r.end.min(done + t),
                None => done..done + t,
            };
            let rows = (rows.start - done)..(rows.end.max(rows.start) - done);
            gpu.queue
                .write_buffer(&self.plan.act.tokens, 0, bytemuck::cast_slice(batch));
            let mut row0 = rows.start;
            let mut first = true;
            // One submit runs the layers plus the first block of LM-head rows; further blocks
            // (perplexity) run the head alone.
            loop {
                let t_encode = Instant::now();
                let n_rows = (rows.end - row0).min(self.plan.logit_rows);
                self.write_step(t, self.pos, row0, n_rows);
                // A single-token step (decode) records the same commands every time, since
                // every per-step value is in the step uniform: its command buffer is recorded
                // while the GPU runs the previous step, and the next one's while it runs this.
                let decode = t == 1 && n_rows == 1 && !self.profiling.is_on();
                let cmd = match self.next_decode.take().filter(|r| decode && r.0 == readout) {
                    Some((_, cmd)) => cmd,
                    None => self.record(t, n_rows, first, readout),
                };
                let t_wait = Instant::now();
                gpu.queue.submit([cmd]);
                if decode {
                    self.next_decode = Some((readout, self.record(1, 1, true, readout)));
                }
                if n_rows == 0 {
                    gpu.device
                        .poll(wgpu::PollType::wait_indefinitely())
                        .map_err(|e| Error::gpu("waiting for the GPU failed", e))?;
                    gpu.check()?;
                    self.host.add(t_encode, t_wait, Instant::now(), None);
                    self.collect_profile()?;
                    break;
                }
                let (staging, len) = match readout {
                    Readout::Logits => (&self.plan.act.staging, n_rows * v * 4),
                    Readout::Argmax(slot) => (&self.plan.act.winner[slot], 8),
                };
                gpu.read_back(staging, len as u64, &mut self.bytes, None)?;
                let t_mapped = Instant::now();
                self.collect_profile()?;
                let t_checks = Instant::now();
                if let Readout::Argmax(_) = readout {
                    let id = self.read_winner(self.pos + row0)?;
                    f(done + row0, Out::Token(id))?;
                } else {
                    let logits: &[f32] = bytemuck::cast_slice(&self.bytes);
                    for (i, row) in logits.chunks_exact(v).enumerate() {
                        if row.iter().any(|x| !x.is_finite()) {
                            return Err(Error::NonFinite {
                                position: self.pos + row0 + i,
                            });
                        }
                        f(done + row0 + i, Out::Logits(row))?;
                    }
                }
                self.host.add(t_encode, t_wait, t_mapped, Some(t_checks));
                first = false;
                row0 += n_rows;
                if row0 >= rows.end {
                    break;
                }
            }
            self.pos += t;
            self.history.extend_from_slice(batch);
            done += t;
        }
        Ok(())
    }

    /// Records one forward step: the layers for `t` tokens (when `layers`), the LM head for
    /// `n_rows` rows and the copy of their logits to the staging buffer (or the argmax and the
    /// copy of its winner).
    fn record(
        &mut self,
        t: usize,
        n_rows: usize,
        layers: bool,
        readout: Readout,
    ) -> wgpu::CommandBuffer {
        let mut enc =
            self.model
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("forward"),
                });
        {
            let mut rec = Recorder::new(&mut enc, self.profiling.profiler());
            if layers {
                self.plan.encode_layers(&mut rec, t as u32, false);
            }
            if n_rows > 0 {
                self.plan.encode_head(&mut rec, n_rows as u32);
                if let Readout::Argmax(_) = readout {
                    self.plan.encode_argmax(&mut rec, n_rows as u32);
                }
            }
        }
        self.profiling.resolve(&mut enc);
        match readout {
            _ if n_rows == 0 => {}
            Readout::Argmax(slot) => {
                let at = ARGMAX_BYTES as u64 - 8; // best[L]
                let (best, dst) = (&self.plan.act.best, &self.plan.act.winner[slot]);
                enc.copy_buffer_to_buffer(best, at, dst, 0, 8);
            }
            Readout::Logits => {
                let len = (n_rows * self.model.config.vocab_size * 4) as u64;
                let (logits, staging) = (&self.plan.act.logits, &self.plan.act.staging);
                enc.copy_buffer_to_buffer(logits, 0, staging, 0, len);
            }
        }
        enc.finish()
    }
}

impl Model {
    /// A new session with an empty KV cache.
    pub fn session(&self) -> Result<Session<'_>> {
        Session::new(self)
    }
}
