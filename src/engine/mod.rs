//! [`Engine`]: many sequences decoded together (continuous batching).
//!
//! An engine owns `max_batch` sequence slots, each with its own part of the KV cache (the
//! layer caches are `(slots, 2, rows, kv_c)`). [`Engine::add`] queues a sequence;
//! [`Engine::step`] first prefills up to one chunk ([`Engine::PREFILL_CHUNK`] tokens) of the prompts
//! added before (in the order they came; a prompt longer than the chunk goes on in the next
//! steps, so a long prompt joining delays the running sequences by one chunk per step, not by
//! its whole prefill), samples the first token of each prompt it completed, then runs one
//! decode step over every other running sequence as one batch: B rows through every matmul,
//! so each weight is read once for all of them, while the step uniform's row map (`RowMap`)
//! gives every row its own position and cache slot for the embedding, rotary positions, the
//! KV store and attention. A finished or cancelled sequence frees its slot at once.
//!
//! **Prefix cache.** A freed slot keeps the tokens its cache holds. A new sequence takes the
//! free slot whose tokens share the longest prefix with its prompt, and only the rest of
//! the prompt is prefilled (the cached positions hold the same keys and values a prefill
//! would write); otherwise it takes the slot unused longest. The memory is the slots' own:
//! nothing is allocated for it, and a slot's tokens are evicted when another prompt takes it.
//! [`Engine::set_prefix_cache`] turns it off.
//!
//! A row's arithmetic does not depend on the other rows, so a sequence's logits, and its ids
//! with greedy sampling, are the same alone or beside others; each sequence samples with its
//! own seeded sampler, so sampled sequences are reproducible from their seed. A sequence that
//! fails alone (non-finite logits, text it cannot decode) ends with [`StopReason::Error`] and
//! its reason; the others run on.
//!
//! Layer: runs models (beside `session`, `generation`, `sampler`); may import `model` and
//! everything below it.

mod scheduler;
mod sequence;

use crate::error::{Error, Result};
use crate::generation::StopReason;
use crate::kernels::{KernelFamily, Profiling, Recorder};
use crate::kernels::{RowMap, Step, MAX_ROWS};
use crate::model::forward::Plan;
use crate::model::Model;
pub use scheduler::{Counters, Event, Job, Observer, Reply, Scheduler};
use sequence::Seq;
pub use sequence::{
    ConstraintFactory, SequenceId, SequenceOutput, SequenceParams, TokenConstraint, TokenLogprobs,
};

/// Prompt tokens prefilled per step, at most (fewer rows of activations and launches
/// prepared than a session's 512; a prompt's results do not depend on how it is split).
const PREFILL_ROWS: usize = 128;

/// A model with `max_batch` sequence slots decoded together; see the module docs.
///
/// ```no_run
/// # fn main() -> Result<(), wgpt::Error> {
/// use wgpt::{Engine, Gpu, GpuOptions, LoadOptions, Model, SamplerConfig, SequenceParams};
/// let gpu = Gpu::new(&GpuOptions::default())?;
/// let model = Model::load_default(&gpu, &LoadOptions::default())?;
/// let mut engine = Engine::new(&model, 8)?;
/// let tok = model.tokenizer().unwrap();
/// for prompt in ["ROMEO:", "JULIET:"] {
///     engine.add(&tok.encode(prompt)?, SequenceParams::new(SamplerConfig::greedy(), 16))?;
/// }
/// while !engine.is_empty() {
///     for out in engine.step()? {
///         print!("[{}] {}", out.id, out.text);
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct Engine<'m> {
    model: &'m Model,
    plan: Plan,
    /// One per cache slot.
    slots: Vec<Option<Seq>>,
    /// The tokens a free slot's cache holds (its last sequence's), and when it was freed.
    kept: Vec<(Vec<u32>, u64)>,
    prefix_cache: bool,
    /// Where a prefix passes between two slots of a layer (one slot's largest layer cache;
    /// made at the first copy).
    scratch: Option<wgpu::Buffer>,
    /// Sequences whose prompt is still (partly) to prefill, first come first.
    prefill_queue: Vec<SequenceId>,
    next_id: u64,
    bytes: Vec<u8>,
    decode_steps: u64,
    /// GPU timestamps of every dispatch, when profiling (`enable_profiling`).
    profiling: Profiling,
}

impl<'m> Engine<'m> {
    /// The most sequences an engine runs at once.
    pub const MAX_BATCH: usize = MAX_ROWS;

    /// Prompt tokens one [`Engine::step`] prefills at most (the chunk of chunked prefill).
    pub const PREFILL_CHUNK: usize = PREFILL_ROWS;

    /// An engine with `max_batch` sequence slots (1 ..= [`Engine::MAX_BATCH`]); allocates the
    /// KV cache of every slot.
    pub fn new(model: &'m Model, max_batch: usize) -> Result<Self> {
        if !(1..=Self::MAX_BATCH).contains(&max_batch) {
            return Err(Error::InvalidInput(format!(
                "an engine runs 1 to {} sequences at once, not {max_batch}",
                Self::MAX_BATCH
            )));
        }
        // At least two rows: the cooperative family runs a lone sequence as two equal rows.
        let rows = max_batch.max(2);
        let (cfg, kv) = (&model.config, model.kernels.kv);
        let chunk = model.max_batch().min(PREFILL_ROWS).max(rows); // tokens per batch
        use crate::model::activations::{kv_cache_bytes, kv_largest_layer_bytes};
        let layer_cache = max_batch as u64 * kv_largest_layer_bytes(cfg, kv, chunk);
        let limit = model.gpu.limits().max_storage_buffer_binding_size;
        if layer_cache > limit {
            return Err(Error::DeviceLimits(format!(
                "the KV cache of {max_batch} sequences of {} positions ({kv}) needs {layer_cache} bytes per layer; the adapter binds at most {limit}: run fewer at once or use a smaller --ctx",
                cfg.n_ctx
            )));
        }
        // Every slot's cache beside the weights, against the memory the model may use.
        let (bound, what) = crate::model::memory_bound(&model.gpu, &model.opts);
        let caches = max_batch as u64 * kv_cache_bytes(cfg, kv, chunk);
        if model.info().weight_bytes + caches > bound {
            return Err(Error::DeviceLimits(format!(
                "{max_batch} sequences of {} positions need {} MB of KV cache ({kv}) beside {} MB of weights, more than {what}: run fewer at once or use a smaller --ctx",
                cfg.n_ctx,
                caches / 1_000_000,
                model.info().weight_bytes / 1_000_000
            )));
        }
        let plan = model.gpu.scoped(|| {
            let plan = Plan::new(
                &model.gpu,
                &model.kernels,
                &model.config,
                &model.weights,
                chunk,
                model.logit_rows().max(rows),
                Some(max_batch),
            )?;
            model.gpu.check()?;
            Ok(plan)
        })?;
        Ok(Engine {
            model,
            plan,
            slots: (0..max_batch).map(|_| None).collect(),
            kept: vec![(Vec::new(), 0); max_batch],
            prefix_cache: true,
            scratch: None,
            prefill_queue: Vec::new(),
            next_id: 0,
            bytes: Vec::new(),
            decode_steps: 0,
            profiling: Profiling::default(),
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Sequence slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Sequences running or waiting for their prefill.
    pub fn active(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether no sequence is running.
    pub fn is_empty(&self) -> bool {
        self.active() == 0
    }

    /// Whether [`Engine::add`] has a slot to give.
    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    /// Decode steps run so far (each over every running sequence).
    pub fn decode_steps(&self) -> u64 {
        self.decode_steps
    }

    /// Times every dispatch with GPU timestamp queries from now on (one compute pass per
    /// dispatch, so slightly slower). Returns false when the adapter has no timestamps.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        self.profiling.enable(&self.model.gpu)
    }

    /// (label, GPU nanoseconds) for every dispatch since the last call, as
    /// [`Session::take_profile`](crate::Session::take_profile).
    pub fn take_profile(&mut self) -> Vec<(String, f64)> {
        self.profiling.take()
    }

    /// Turns the prefix cache on (the default) or off; off, every prompt is prefilled whole.
    pub fn set_prefix_cache(&mut self, on: bool) {
        self.prefix_cache = on;
        if !on {
            self.kept.iter_mut().for_each(|k| k.0.clear());
        }
    }

    /// Adds a sequence: checks its prompt and parameters and reserves a slot (with the
    /// longest cached prefix of the prompt, see the module docs); the next steps prefill the
    /// rest and return its first token. Fails when every slot is taken, the prompt is empty
    /// or longer than the context, or a parameter is invalid.
    pub fn add(&mut self, prompt: &[u32], params: SequenceParams) -> Result<SequenceId> {
        let cfg = &self.model.config;
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        if prompt.len() > cfg.n_ctx {
            return Err(Error::InvalidInput(format!(
                "the prompt has {} tokens but the context holds {}; shorten it",
                prompt.len(),
                cfg.n_ctx
            )));
        }
        if let Some(t) = prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {t} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        if params.max_tokens == 0 {
            return Err(Error::InvalidInput(
                "at least one token must be generated".into(),
            ));
        }
        if params
            .logprobs
            .is_some_and(|n| n > SequenceParams::MAX_TOP_LOGPROBS)
        {
            return Err(Error::InvalidInput(format!(
                "at most {} alternatives per token can be reported",
                SequenceParams::MAX_TOP_LOGPROBS
            )));
        }
        params.sampler.validate()?;
        if let Some((t, _)) = params
            .sampler
            .logit_bias
            .iter()
            .find(|(t, _)| *t as usize >= cfg.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "the logit bias names token {t}, outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        // The slot whose tokens (a free slot's kept ones, a running sequence's cached ones)
        // give the longest reusable prefix, and the free slot unused longest.
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .collect();
        let Some(&oldest) = free.iter().min_by_key(|&&s| self.kept[s].1) else {
            return Err(Error::InvalidInput(format!(
                "all {} sequence slots are taken",
                self.slots.len()
            )));
        };
        let (best, cached) = (0..self.slots.len())
            .map(|s| (s, self.reusable(s, prompt)))
            .max_by_key(|&(s, cached)| {
                (
                    cached,
                    self.slots[s].is_none(),
                    std::cmp::Reverse(self.kept[s].1),
                )
            })
            .unwrap_or((oldest, 0));
        // A prompt that continues all of a free slot's tokens extends them in place; one that
        // branches off (or shares a running sequence's prompt) copies the shared prefix into
        // the free slot unused longest, so that the first slot keeps its tokens.
        let in_place = self.slots[best].is_none()
            && (cached >= self.cached_in(best).len() - 1 || oldest == best || !self.copies());
        let (slot, cached) = if cached == 0 {
            (oldest, 0)
        } else if in_place {
            (best, cached)
        } else if self.copies() {
            self.copy_prefix(best, oldest, cached);
            self.kept[oldest].0.clear();
            if self.slots[best].is_none() {
                self.kept[best].1 = self.clock();
            }
            (oldest, cached)
        } else {
            // No copy possible: a running sequence's prefix cannot be shared.
            (oldest, 0)
        };
        self.add_at(slot, prompt, cached, params)
    }

    /// Puts a new sequence in free slot `slot` with `cached` prompt tokens in its cache.
    fn add_at(
        &mut self,
        slot: usize,
        prompt: &[u32],
        cached: usize,
        params: SequenceParams,
    ) -> Result<SequenceId> {
        let id = SequenceId(self.next_id);
        let seq = Seq::new(id, self.model, prompt, cached, &params)?;
        self.next_id += 1;
        self.kept[slot].0.clear();
        self.slots[slot] = Some(seq);
        self.prefill_queue.push(id);
        if cached > 0 {
            log::debug!("{id}: {cached} of {} prompt tokens cached", prompt.len());
        }
        Ok(id)
    }

    /// The tokens slot `s`'s cache holds: a running sequence's cached ones, or those a free
    /// slot kept.
    fn cached_in(&self, s: usize) -> &[u32] {
        match &self.slots[s] {
            Some(q) => &q.history[..q.pos],
            None => &self.kept[s].0,
        }
    }

    /// How many of `prompt`'s first tokens slot `s`'s cache holds and a new sequence can
    /// use: the common prefix with the tokens it kept, less one (the last prompt token is
    /// always run, for its logits); none where a sliding-window layer's ring has overwritten
    /// keys that the positions after the prefix attend to.
    fn reusable(&self, s: usize, prompt: &[u32]) -> usize {
        let kept = self.cached_in(s);
        if !self.prefix_cache || kept.is_empty() {
            return 0;
        }
        let common = kept.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let common = common.min(prompt.len() - 1);
        let cfg = &self.model.config;
        // A ring of `rows` positions holds the slot's tokens' last `rows`; position `common`
        // attends to the `window` before it.
        let fits = (0..cfg.n_layer).all(|l| match cfg.window(l) {
            Some(w) => {
                let rows = crate::model::activations::cache_rows(cfg, l, self.plan.max_batch);
                rows >= cfg.n_ctx || kept.len() - common + w.min(common) <= rows
            }
            None => true,
        });
        if fits {
            common
        } else {
            0
        }
    }

    /// A counter that orders slot uses (for "unused longest").
    fn clock(&self) -> u64 {
        self.next_id + self.decode_steps + 1
    }

    /// Whether cache rows are whole 4-byte words, as buffer copies need.
    fn copies(&self) -> bool {
        (self.model.config.heads().kv_c() * self.model.kernels.kv.bytes()).is_multiple_of(4)
    }

    /// Copies the keys and values of positions `0..n` of slot `from` into slot `to`, in every
    /// layer (a ring layer's whole ring: it holds the window before position n).
    fn copy_prefix(&mut self, from: usize, to: usize, n: usize) {
        let gpu = &self.model.gpu;
        let bytes = self.model.kernels.kv.bytes() as u64;
        let k = self.model.config.heads().kv_c() as u64;
        let caches = &self.plan.act.kv_cache;
        let largest = caches.iter().map(|c| 2 * c.rows as u64 * k * bytes).max();
        let scratch = self.scratch.get_or_insert_with(|| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("prefix copy"),
                size: largest.unwrap_or(4),
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("prefix copy"),
            });
        for cache in caches {
            let rows = cache.rows as u64;
            let slot_bytes = 2 * rows * k * bytes;
            let (a, b) = (from as u64 * slot_bytes, to as u64 * slot_bytes);
            // Keys, then values, of positions 0..n; a ring's whole slot.
            let parts: &[(u64, u64)] = match (n as u64) < rows {
                true => &[
                    (0, n as u64 * k * bytes),
                    (rows * k * bytes, n as u64 * k * bytes),
                ],
                false => &[(0, slot_bytes)],
            };
            for &(at, len) in parts {
                enc.copy_buffer_to_buffer(&cache.buf, a + at, scratch, 0, len);
                enc.copy_buffer_to_buffer(scratch, 0, &cache.buf, b + at, len);
            }
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// Prompt tokens of sequence `id` that were found in the prefix cache (not prefilled).
    pub fn cached_tokens(&self, id: SequenceId) -> Option<usize> {
        let s = self.slot_of(id)?;
        self.slots[s].as_ref().map(|q| q.cached)
    }

    /// Ends a sequence now and frees its slot (keeping what its cache holds for the prefix
    /// cache); false if it is not running.
    pub fn cancel(&mut self, id: SequenceId) -> bool {
        match self.slot_of(id) {
            Some(s) => {
                self.free(s, true);
                true
            }
            None => false,
        }
    }

    /// Frees slot `s`, keeping the tokens its cache holds where `keep`.
    fn free(&mut self, s: usize, keep: bool) {
        if let Some(q) = self.slots[s].take() {
            self.prefill_queue.retain(|&id| id != q.id);
            if keep && self.prefix_cache {
                let mut tokens = q.history;
                tokens.truncate(q.pos);
                self.kept[s] = (tokens, self.clock());
            }
        }
    }

    /// Whether the sequence is running (or waiting for its prefill).
    pub fn contains(&self, id: SequenceId) -> bool {
        self.slot_of(id).is_some()
    }

    fn slot_of(&self, id: SequenceId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.id == id))
    }

    /// Prefills up to [`Engine::PREFILL_CHUNK`] prompt tokens of the sequences waiting for it (one
    /// output for each prompt completed: its first token), then runs one decode step over
    /// the other running sequences together (one output each). Finished sequences leave
    /// their slot. A sequence that fails alone ends with [`StopReason::Error`]; a GPU failure
    /// is an error for the whole step.
    pub fn step(&mut self) -> Result<Vec<SequenceOutput>> {
        let model = self.model;
        model.gpu.scoped(|| {
            let decoding: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].as_ref().is_some_and(|q| q.next.is_some()))
                .collect();
            let mut outs = Vec::new();
            let mut budget = self.plan.max_batch.min(PREFILL_ROWS);
            while budget > 0 {
                let Some(&id) = self.prefill_queue.first() else {
                    break;
                };
                let Some(s) = self.slot_of(id) else {
                    self.prefill_queue.remove(0); // gone (cancelled): not expected here
                    continue;
                };
                let (fed, out) = self.prefill(s, budget)?;
                budget -= fed;
                if let Some(out) = out {
                    self.prefill_queue.remove(0);
                    self.finish(s, &out);
                    outs.push(out);
                }
            }
            if !decoding.is_empty() {
                for (s, out) in self.decode(&decoding)? {
                    self.finish(s, &out);
                    outs.push(out);
                }
            }
            Ok(outs)
        })
    }

    fn finish(&mut self, slot: usize, out: &SequenceOutput) {
        if let Some(r) = out.finish {
            self.free(slot, r != StopReason::Error);
        }
    }

    /// Writes the step uniform: the header and the row map.
    fn write_step(&self, step: Step, map: &RowMap) {
        let q = &self.model.gpu.queue;
        q.write_buffer(&self.plan.act.step, 0, bytemuck::bytes_of(&step));
        let at = std::mem::size_of::<Step>() as u64;
        q.write_buffer(&self.plan.act.step, at, bytemuck::bytes_of(map));
    }

    /// Runs the recorded commands and reads `rows` logits rows back into `bytes`.
    fn submit(&mut self, t: usize, rows: usize, per_row: bool) -> Result<()> {
        let gpu = &self.model.gpu;
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("engine"),
            });
        {
            let mut rec = Recorder::new(&mut enc, self.profiling.profiler());
            self.plan.encode_layers(&mut rec, t as u32, per_row);
            match rows {
                0 => {}
                _ if per_row => self.plan.encode_head_rows(&mut rec, t as u32),
                _ => self.plan.encode_head(&mut rec, rows as u32),
            }
        }
        self.profiling.resolve(&mut enc);
        let len = (rows * self.model.config.vocab_size * 4) as u64;
        if rows > 0 {
            let (logits, staging) = (&self.plan.act.logits, &self.plan.act.staging);
            enc.copy_buffer_to_buffer(logits, 0, staging, 0, len);
        }
        gpu.queue.submit([enc.finish()]);
        if rows == 0 {
            gpu.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::gpu("waiting for the GPU failed", e))?;
            gpu.check()?;
        } else {
            gpu.read_back(&self.plan.act.staging, len, &mut self.bytes, None)?;
        }
        self.profiling.collect(gpu)
    }

    /// Runs up to `budget` tokens of slot `s`'s prompt into its cache; when that completes
    /// the prompt, samples its first token from the last position's logits. Returns the
    /// tokens run and the output, if any.
    fn prefill(&mut self, s: usize, budget: usize) -> Result<(usize, Option<SequenceOutput>)> {
        let seq = self.slots[s].as_ref().expect("a sequence in the slot");
        let left = seq.prompt_left();
        let t = left.len().min(budget);
        let last = t == left.len();
        let pos = seq.pos;
        let q = &self.model.gpu.queue;
        q.write_buffer(&self.plan.act.tokens, 0, bytemuck::cast_slice(&left[..t]));
        let map = RowMap {
            per_row: 0,
            slot: s as u32,
            ..bytemuck::Zeroable::zeroed()
        };
        let step = Step {
            n_tokens: t as u32,
            pos: pos as u32,
            row0: t as u32 - 1,
            n_rows: last as u32,
        };
        self.write_step(step, &map);
        self.submit(t, last as usize, false)?;
        let seq = self.slots[s].as_mut().expect("a sequence in the slot");
        if !last {
            seq.pos += t;
            return Ok((t, None));
        }
        let v = self.model.config.vocab_size;
        let logits: &[f32] = bytemuck::cast_slice(&self.bytes[..v * 4]);
        Ok((t, Some(advance(self.model, seq, logits, t))))
    }

    /// One decode step over the sequences in `slots` (each has a token to feed).
    fn decode(&mut self, slots: &[usize]) -> Result<Vec<(usize, SequenceOutput)>> {
        let mut ids = Vec::with_capacity(slots.len() + 1);
        let mut map = RowMap {
            per_row: 1,
            ..bytemuck::Zeroable::zeroed()
        };
        for (r, &s) in slots.iter().enumerate() {
            let seq = self.slots[s].as_ref().expect("a sequence in the slot");
            ids.push(seq.next.expect("a token to feed"));
            map.rows[r] = [seq.pos as u32, s as u32, 0, 0];
        }
        // The cooperative family runs one row with its one-row kernels (other arithmetic than
        // its batch kernels): a lone sequence goes as two equal rows, so that its results do
        // not depend on whether others run beside it. (The barrier-free one-row kernels sum
        // in the batch kernels' order.)
        if self.model.kernels.family == KernelFamily::Cooperative && ids.len() == 1 {
            ids.push(ids[0]);
            map.rows[1] = map.rows[0];
        }
        let t = ids.len();
        let q = &self.model.gpu.queue;
        q.write_buffer(&self.plan.act.tokens, 0, bytemuck::cast_slice(&ids));
        let step = Step {
            n_tokens: t as u32,
            pos: 0,
            row0: 0,
            n_rows: t as u32,
        };
        self.write_step(step, &map);
        self.submit(t, t, true)?;
        self.decode_steps += 1;
        let v = self.model.config.vocab_size;
        let bytes = std::mem::take(&mut self.bytes);
        let logits: &[f32] = bytemuck::cast_slice(&bytes[..t * v * 4]);
        let mut outs = Vec::with_capacity(slots.len());
        for (r, &s) in slots.iter().enumerate() {
            let seq = self.slots[s].as_mut().expect("a sequence in the slot");
            outs.push((s, advance(self.model, seq, &logits[r * v..(r + 1) * v], 1)));
        }
        self.bytes = bytes;
        Ok(outs)
    }
}

/// Samples a sequence's next token; non-finite logits, or text that cannot be decoded, end it
/// with [`StopReason::Error`] (the others run on).
fn advance(model: &Model, seq: &mut Seq, logits: &[f32], fed: usize) -> SequenceOutput {
    let failed = |seq: &Seq, error: String| {
        log::warn!("{}: {error}; ending it", seq.id);
        SequenceOutput {
            id: seq.id,
            token: None,
            text: String::new(),
            finish: Some(StopReason::Error),
            logprobs: None,
            error: Some(error),
        }
    };
    if logits.iter().any(|x| !x.is_finite()) {
        let at = seq.pos + fed - 1;
        return failed(seq, format!("non-finite logits at position {at}"));
    }
    match seq.advance(model, logits, fed) {
        Ok(out) => out,
        Err(e) => failed(seq, e.to_string()),
    }
}
