//! [`Session`]: one conversation with a model. It owns the KV cache and the activations, runs
//! prefill and decode steps, and streams generated tokens.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::kernels::{Profiler, Recorder};
use crate::model::forward::{Plan, Step};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::StreamDecoder;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The context window (n_positions) is full.
    Context,
}

impl StopReason {
    /// `eos`, `max_tokens` or `context`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::Context => "context",
        }
    }
}

/// A generated token and the text it completes.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    pub id: u32,
    /// New text (may be empty while a multi-byte character is incomplete).
    pub text: String,
}

/// Host (CPU) time spent in forward steps, summed since the last
/// [`Session::take_host_times`]: where a step's wall time goes besides the GPU kernels.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTimes {
    /// Forward submits (one per batch of at most `max_batch` tokens, plus one per further
    /// block of LM-head rows).
    pub steps: usize,
    /// Writing the step uniform and recording the dispatches (nothing to record for a decode
    /// step whose commands were recorded ahead).
    pub encode: Duration,
    /// From the submit until the GPU is done and the logits (if any) are mapped and copied
    /// out: the GPU's run, the copy to the staging buffer and the mapping (a decode step
    /// records the next one's commands meanwhile).
    pub wait: Duration,
    /// Checking the logits for non-finite values and handing them to the caller (timestamp
    /// read-back when profiling is not counted).
    pub after: Duration,
}

impl std::ops::AddAssign for HostTimes {
    fn add_assign(&mut self, o: HostTimes) {
        self.steps += o.steps;
        self.encode += o.encode;
        self.wait += o.wait;
        self.after += o.after;
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

/// A model's KV cache and working buffers.
pub struct Session<'m> {
    model: &'m Model,
    plan: Plan,
    pos: usize,
    bytes: Vec<u8>,
    profiler: Option<Profiler>,
    /// GPU nanoseconds per dispatch recorded since the last `take_profile`.
    profile: Vec<(&'static str, f64)>,
    host: HostTimes,
    /// The next single-token step's commands, recorded ahead (see `run`).
    next_decode: Option<wgpu::CommandBuffer>,
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model) -> Result<Self> {
        let plan = Plan::new(
            &model.gpu,
            &model.kernels,
            &model.config,
            &model.weights,
            model.max_batch(),
            model.logit_rows(),
        )?;
        model.gpu.check()?;
        Ok(Session {
            model,
            plan,
            pos: 0,
            bytes: Vec::new(),
            profiler: None,
            profile: Vec::new(),
            host: HostTimes::default(),
            next_decode: None,
        })
    }

    /// Runs one small batch and one single-token step so that the driver compiles every
    /// pipeline now (lavapipe compiles on first use), then empties the cache. Timings taken
    /// afterwards measure inference only.
    pub fn warm_up(&mut self) -> Result<()> {
        let n = self.model.config.n_positions.min(9);
        self.reset();
        if n > 1 {
            self.forward(&vec![0; n - 1])?;
        }
        self.forward(&[0])?;
        self.reset();
        Ok(())
    }

    /// Times every dispatch with GPU timestamp queries from now on (one compute pass per
    /// dispatch, so slightly slower). Returns false when the adapter has no timestamps.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        if self.profiler.is_none() {
            self.profiler = Profiler::new(&self.model.gpu, 2048)?;
        }
        Ok(self.profiler.is_some())
    }

    /// (kernel name, GPU nanoseconds) for every dispatch since the last call.
    pub fn take_profile(&mut self) -> Vec<(&'static str, f64)> {
        std::mem::take(&mut self.profile)
    }

    /// Host time of the forward steps since the last call.
    pub fn take_host_times(&mut self) -> HostTimes {
        std::mem::take(&mut self.host)
    }

    fn collect_profile(&mut self) -> Result<()> {
        if let Some(p) = &mut self.profiler {
            let times = p.read(&self.model.gpu)?;
            self.profile.extend(times);
        }
        Ok(())
    }

    /// Tokens in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Empties the cache (the buffers are kept).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidInput("no tokens to process".into()));
        }
        let n_ctx = self.model.config.n_positions;
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
        self.check_tokens(tokens)?;
        let mut last = Vec::new();
        let n = tokens.len();
        self.run(tokens, Some(n - 1..n), |_, l| {
            last = l.to_vec();
            Ok(())
        })?;
        Ok(last)
    }

    /// Like [`Session::forward`] but hands the logits of every position to `f(index, logits)`,
    /// a block at a time (perplexity).
    pub fn forward_each(
        &mut self,
        tokens: &[u32],
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.run(tokens, None, &mut f)
    }

    /// Processes `tokens` in batches; `want` limits which positions' logits are read (all when None).
    fn run(
        &mut self,
        tokens: &[u32],
        want: Option<std::ops::Range<usize>>,
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.check_tokens(tokens)?;
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
                let step = Step {
                    n_tokens: t as u32,
                    pos: self.pos as u32,
                    row0: row0 as u32,
                    n_rows: n_rows as u32,
                };
                gpu.queue
                    .write_buffer(&self.plan.act.step, 0, bytemuck::bytes_of(&step));
                // A single-token step (decode) records the same commands every time, since
                // every per-step value is in the step uniform: its command buffer is recorded
                // while the GPU runs the previous step, and the next one's while it runs this.
                let decode = t == 1 && n_rows == 1 && self.profiler.is_none();
                let cmd = match self.next_decode.take().filter(|_| decode) {
                    Some(cmd) => cmd,
                    None => self.record(t, n_rows, first),
                };
                let t_wait = Instant::now();
                gpu.queue.submit([cmd]);
                if decode {
                    self.next_decode = Some(self.record(1, 1, true));
                }
                if n_rows == 0 {
                    gpu.device
                        .poll(wgpu::PollType::wait_indefinitely())
                        .map_err(|e| Error::Gpu(e.to_string()))?;
                    gpu.check()?;
                    self.host.add(t_encode, t_wait, Instant::now(), None);
                    self.collect_profile()?;
                    break;
                }
                let len = (n_rows * v * 4) as u64;
                gpu.read_back(&self.plan.act.staging, len, &mut self.bytes)?;
                let t_mapped = Instant::now();
                self.collect_profile()?;
                let t_checks = Instant::now();
                let logits: &[f32] = bytemuck::cast_slice(&self.bytes);
                for (i, row) in logits.chunks_exact(v).enumerate() {
                    if row.iter().any(|x| !x.is_finite()) {
                        return Err(Error::NonFinite {
                            position: self.pos + row0 + i,
                        });
                    }
                    f(done + row0 + i, row)?;
                }
                self.host.add(t_encode, t_wait, t_mapped, Some(t_checks));
                first = false;
                row0 += n_rows;
                if row0 >= rows.end {
                    break;
                }
            }
            self.pos += t;
            done += t;
        }
        Ok(())
    }

    /// Records one forward step: the layers for `t` tokens (when `layers`), the LM head for
    /// `n_rows` rows and the copy of their logits to the staging buffer.
    fn record(&mut self, t: usize, n_rows: usize, layers: bool) -> wgpu::CommandBuffer {
        let mut enc =
            self.model
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("forward"),
                });
        {
            let mut rec = Recorder::new(&mut enc, self.profiler.as_mut());
            if layers {
                self.plan.encode_layers(&mut rec, t as u32);
            }
            if n_rows > 0 {
                self.plan.encode_head(&mut rec, n_rows as u32);
            }
        }
        if let Some(p) = &self.profiler {
            p.resolve(&mut enc);
        }
        if n_rows > 0 {
            let len = (n_rows * self.model.config.vocab_size * 4) as u64;
            enc.copy_buffer_to_buffer(&self.plan.act.logits, 0, &self.plan.act.staging, 0, len);
        }
        enc.finish()
    }

    /// Generates up to `max_tokens` tokens after `prompt`, streaming them as an iterator.
    /// The cache is reset first.
    pub fn generate(
        &mut self,
        prompt: &str,
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        let tok = self.model.tokenizer.as_ref().ok_or_else(|| {
            Error::InvalidInput("this model has no tokenizer; use generate_ids".into())
        })?;
        let ids = tok.encode(prompt)?;
        self.generate_ids(&ids, sampler, max_tokens)
    }

    /// Like [`Session::generate`] but from token ids.
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        sampler: SamplerConfig,
        max_tokens: usize,
    ) -> Result<Generation<'_, 'm>> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        let n_ctx = self.model.config.n_positions;
        if prompt.len() > n_ctx {
            return Err(Error::InvalidInput(format!(
                "the prompt has {} tokens but the context holds {n_ctx}; shorten it (or use --truncate)",
                prompt.len()
            )));
        }
        let sampler = Sampler::new(sampler)?;
        self.reset();
        Ok(Generation {
            session: self,
            sampler,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            max_tokens,
            generated: 0,
            decoder: StreamDecoder::new(),
            stop: None,
            prefill_time: Duration::ZERO,
            decode_time: Duration::ZERO,
            decode_steps: 0,
        })
    }
}

/// A running generation: an iterator of tokens. After it ends, [`Generation::stop_reason`]
/// says why and the timing methods give speeds.
pub struct Generation<'s, 'm> {
    session: &'s mut Session<'m>,
    sampler: Sampler,
    history: Vec<u32>,
    prompt_len: usize,
    max_tokens: usize,
    generated: usize,
    decoder: StreamDecoder,
    stop: Option<StopReason>,
    prefill_time: Duration,
    decode_time: Duration,
    decode_steps: usize,
}

impl Generation<'_, '_> {
    /// Why generation stopped (`None` while it runs).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }

    /// Generated token ids so far.
    pub fn tokens(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }

    /// Prompt tokens per second of prefill.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prompt_len, self.prefill_time)
    }

    /// Decode steps per second (each a single-token forward).
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_steps, self.decode_time)
    }

    fn step(&mut self) -> Result<Option<GeneratedToken>> {
        if self.generated >= self.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let logits = if self.generated == 0 {
            let t0 = Instant::now();
            let l = self.session.forward(&self.history)?;
            self.prefill_time = t0.elapsed();
            l
        } else {
            if self.session.pos >= self.session.model.config.n_positions {
                self.stop = Some(StopReason::Context);
                return Ok(None);
            }
            let last = *self.history.last().unwrap_or(&0);
            let t0 = Instant::now();
            let l = self.session.forward(&[last])?;
            self.decode_time += t0.elapsed();
            self.decode_steps += 1;
            l
        };
        let id = self.sampler.sample(&logits, &self.history);
        self.generated += 1;
        if Some(id) == self.session.model.config.eos_token_id {
            self.stop = Some(StopReason::Eos);
            return Ok(None);
        }
        self.history.push(id);
        let text = match &self.session.model.tokenizer {
            Some(tok) => self.decoder.push(tok, id)?,
            None => String::new(),
        };
        Ok(Some(GeneratedToken { id, text }))
    }
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stop.is_some() {
            return None;
        }
        match self.step() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.stop = Some(StopReason::MaxTokens);
                Some(Err(e))
            }
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}
