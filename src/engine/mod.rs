//! [`Engine`]: many sequences decoded together (continuous batching).
//!
//! An engine owns `max_batch` sequence slots, each with its own part of the KV cache (the
//! layer caches are `(slots, 2, n_positions, kv_c)`). [`Engine::add`] queues a sequence;
//! [`Engine::step`] first prefills the sequences added since the last step, one at a time into
//! their slots (their first token comes out of that), then runs one decode step over every
//! other running sequence as one batch: B rows through every matmul, so each weight is read
//! once for all of them, while the step uniform's row map (`RowMap`) gives every row its own
//! position and cache slot for the embedding, rotary positions, the KV store and attention.
//! A finished or cancelled sequence frees its slot at once.
//!
//! A row's arithmetic does not depend on the other rows, so a sequence's logits, and its ids
//! with greedy sampling, are the same alone or beside others; each sequence samples with its
//! own seeded sampler, so sampled sequences are reproducible from their seed.
//!
//! Layer: runs models (beside `session`, `generation`, `sampler`); may import `model` and
//! everything below it.

mod sequence;

use crate::error::{Error, Result};
use crate::generation::StopReason;
use crate::kernels::{KernelFamily, Recorder};
use crate::kernels::{RowMap, Step, MAX_ROWS};
use crate::model::forward::Plan;
use crate::model::Model;
use sequence::Seq;
pub use sequence::{SequenceId, SequenceOutput, SequenceParams};

/// Prompt tokens per prefill submit (fewer rows of activations and launches prepared than a
/// session's 512; a prompt's results do not depend on how it is split).
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
    next_id: u64,
    bytes: Vec<u8>,
    decode_steps: u64,
}

impl<'m> Engine<'m> {
    /// The most sequences an engine runs at once.
    pub const MAX_BATCH: usize = MAX_ROWS;

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
            next_id: 0,
            bytes: Vec::new(),
            decode_steps: 0,
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

    /// Adds a sequence: checks its prompt and parameters and reserves a slot; the next
    /// [`Engine::step`] prefills it and returns its first token. Fails when every slot is
    /// taken, the prompt is empty or longer than the context, or a parameter is invalid.
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
        let Some(slot) = self.slots.iter().position(Option::is_none) else {
            return Err(Error::InvalidInput(format!(
                "all {} sequence slots are taken",
                self.slots.len()
            )));
        };
        let id = SequenceId(self.next_id);
        let seq = Seq::new(id, self.model, prompt, &params)?;
        self.next_id += 1;
        self.slots[slot] = Some(seq);
        Ok(id)
    }

    /// Ends a sequence now and frees its slot; false if it is not running.
    pub fn cancel(&mut self, id: SequenceId) -> bool {
        match self.slot_of(id) {
            Some(s) => {
                self.slots[s] = None;
                true
            }
            None => false,
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

    /// Prefills the sequences added since the last step (one output each, their first token),
    /// then runs one decode step over the other running sequences together (one output each).
    /// Finished sequences leave their slot. A sequence whose logits are not finite ends with
    /// [`StopReason::Error`]; a GPU failure is an error for the whole step.
    pub fn step(&mut self) -> Result<Vec<SequenceOutput>> {
        let model = self.model;
        model.gpu.scoped(|| {
            let decoding: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].as_ref().is_some_and(|q| q.next.is_some()))
                .collect();
            let mut outs = Vec::new();
            for s in 0..self.slots.len() {
                if self.slots[s].as_ref().is_some_and(|q| q.prompt.is_some()) {
                    let out = self.prefill(s)?;
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
        if out.finish.is_some() {
            self.slots[slot] = None;
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
            let mut rec = Recorder::new(&mut enc, None);
            self.plan.encode_layers(&mut rec, t as u32, per_row);
            match rows {
                0 => {}
                _ if per_row => self.plan.encode_head_rows(&mut rec, t as u32),
                _ => self.plan.encode_head(&mut rec, rows as u32),
            }
        }
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
            return gpu.check();
        }
        gpu.read_back(&self.plan.act.staging, len, &mut self.bytes, None)
    }

    /// Runs slot `s`'s prompt into its cache, in batches of the plan's size, and samples its
    /// first token from the last position's logits.
    fn prefill(&mut self, s: usize) -> Result<SequenceOutput> {
        let seq = self.slots[s].as_mut().expect("a sequence in the slot");
        let prompt = seq.prompt.take().expect("a prompt to prefill");
        let map = RowMap {
            per_row: 0,
            slot: s as u32,
            ..bytemuck::Zeroable::zeroed()
        };
        let chunks: Vec<&[u32]> = prompt.chunks(self.plan.max_batch).collect();
        let mut pos = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let t = chunk.len();
            let last = i + 1 == chunks.len();
            let q = &self.model.gpu.queue;
            q.write_buffer(&self.plan.act.tokens, 0, bytemuck::cast_slice(chunk));
            let step = Step {
                n_tokens: t as u32,
                pos: pos as u32,
                row0: t as u32 - 1,
                n_rows: last as u32,
            };
            self.write_step(step, &map);
            self.submit(t, last as usize, false)?;
            pos += t;
        }
        let v = self.model.config.vocab_size;
        let logits: &[f32] = bytemuck::cast_slice(&self.bytes[..v * 4]);
        let seq = self.slots[s].as_mut().expect("a sequence in the slot");
        advance(self.model, seq, logits, prompt.len())
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
            outs.push((s, advance(self.model, seq, &logits[r * v..(r + 1) * v], 1)?));
        }
        self.bytes = bytes;
        Ok(outs)
    }
}

/// Samples a sequence's next token; non-finite logits end it with [`StopReason::Error`].
fn advance(model: &Model, seq: &mut Seq, logits: &[f32], fed: usize) -> Result<SequenceOutput> {
    if logits.iter().any(|x| !x.is_finite()) {
        log::warn!(
            "{}: non-finite logits at position {}; ending it",
            seq.id,
            seq.pos + fed - 1
        );
        return Ok(SequenceOutput {
            id: seq.id,
            token: None,
            text: String::new(),
            finish: Some(StopReason::Error),
        });
    }
    seq.advance(model, logits, fed)
}
