//! Activations, KV cache and the op builder the families' forward passes are written with.
//! Every buffer and bind group is made once per session ([`Plan::new`]); a forward step
//! writes the step uniform and the token ids, encodes the recorded dispatches into one command
//! encoder, submits once and reads back the logits.

use crate::config::{Activation, Config};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::{
    add_positions, argmax, attention, attention_rows, embed, gated, kv_store, layer_norm, matmul,
    rope, Argmax, Dispatch, FusedNorm, Kernels, KvDtype, MatmulDispatch, MatmulSpec, Recorder,
    ARGMAX_BYTES, X_WINDOW,
};
use crate::model::weights::{Linear, Norm, RowChunks, Weights};

/// The per-step uniform (`Step` in `shaders/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Step {
    pub n_tokens: u32,
    pub pos: u32,
    pub row0: u32,
    pub n_rows: u32,
}

/// Rows of a batch of sequences (`per_row` steps): `MAX_ROWS` in `shaders/common.wgsl`.
pub(crate) const MAX_ROWS: usize = 64;

/// What follows [`Step`] in the step uniform: how the batch's rows map to positions and KV
/// cache slots (`Step` in `shaders/common.wgsl`, after `n_rows`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowMap {
    /// 0: the batch is one sequence's tokens at `pos..pos + T` of cache slot `slot`; 1: row t
    /// is one token at position `rows[t][0]` of slot `rows[t][1]`.
    pub per_row: u32,
    pub slot: u32,
    pub _pad: [u32; 2],
    pub rows: [[u32; 4]; MAX_ROWS],
}

/// The step uniform: [`Step`], then the [`RowMap`]; zeroed (one sequence in slot 0).
pub(crate) fn step_uniform(gpu: &Gpu) -> wgpu::Buffer {
    let bytes = std::mem::size_of::<Step>() + std::mem::size_of::<RowMap>();
    let zeros = vec![0u8; bytes];
    let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step"),
        size: bytes as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&buf, 0, &zeros);
    buf
}

/// GPU buffers of one session (or engine). S = KV-cache slots (sequences), B = max batch, C = hidden size, F = feed-forward size,
/// E = embedding width, R = logits rows per read-back; Q = n_head · head_dim and
/// K = n_kv_head · head_dim (Q = K = C without grouped-query attention).
pub(crate) struct Activations {
    pub step: wgpu::Buffer,          // Step uniform
    pub tokens: wgpu::Buffer,        // (B) u32; greedy steps leave their token in [0]
    pub x: wgpu::Buffer,             // (B, C) residual stream
    pub ln: wgpu::Buffer,            // (B, C) LayerNorm output (post-LN: the other stream)
    pub ln2: wgpu::Buffer,           // (B, C) a second LayerNorm output (parallel residual)
    pub qkv: wgpu::Buffer,           // (B, Q + 2K)
    pub att: wgpu::Buffer,           // (B, Q) attention output, heads concatenated
    pub fc: wgpu::Buffer,            // (B, F) MLP hidden
    pub gate_up: wgpu::Buffer,       // (B, 2F) a gated MLP's [gate | up] (gated families only)
    pub emb: wgpu::Buffer,           // (B, E) rows of embedding width (project_in / _out)
    pub kv_cache: Vec<wgpu::Buffer>, // n_layer × (S, 2, n_ctx, K): per slot keys, then values (f32 or f16)
    pub logits: wgpu::Buffer,        // (R, V)
    pub best: wgpu::Buffer,          // (L + 1, 2) u32 argmax candidates, then the winner
    pub staging: wgpu::Buffer,       // (R, V) mappable copy of logits
    pub winner: [wgpu::Buffer; 2],   // (2) u32 mappable copies of best[L], one per step in flight
}

/// The embedding width E: the hidden size unless the family projects it.
fn embedding_width(cfg: &Config) -> usize {
    match cfg.family {
        crate::config::Family::Opt { proj_dim, .. } => proj_dim,
        _ => cfg.n_embd,
    }
}

/// Width of the gate | up buffer: 2F for gated feed-forwards, else nothing (one row of 4).
pub(crate) fn gate_up_width(cfg: &Config) -> usize {
    if cfg.rms_norm() {
        2 * cfg.n_inner
    } else {
        4
    }
}

/// Bytes of the KV cache of one session: keys and values of every layer and position of the
/// context in use.
pub(crate) fn kv_cache_bytes(cfg: &Config, kv: KvDtype) -> u64 {
    cfg.n_layer as u64 * kv_layer_bytes(cfg, kv)
}

/// Bytes of one layer's cache of one sequence: (2, n_ctx, K).
pub(crate) fn kv_layer_bytes(cfg: &Config, kv: KvDtype) -> u64 {
    2 * cfg.n_ctx as u64 * cfg.heads().kv_c() as u64 * kv.bytes() as u64
}

/// Bytes of activations and KV cache a session needs (for limit checks before allocating).
pub(crate) fn session_bytes(cfg: &Config, kv: KvDtype, max_batch: usize, logit_rows: usize) -> u64 {
    let (b, c, f) = (max_batch as u64, cfg.n_embd as u64, cfg.n_inner as u64);
    let e = embedding_width(cfg) as u64;
    let h = cfg.heads();
    let (q, qkv, gu) = (h.q_c() as u64, h.qkv_c() as u64, gate_up_width(cfg) as u64);
    let act = b * (c * 4 + q + qkv + f + gu + e) * 4 + 5 * X_WINDOW;
    let logits = 2 * logit_rows as u64 * cfg.vocab_size as u64 * 4;
    kv_cache_bytes(cfg, kv) + act + logits + ARGMAX_BYTES as u64 + 2 * 8
}

/// A matmul input: also bindable as a uniform window (see `matmul_block.wgsl`), with slack.
fn matmul_input(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64 + X_WINDOW,
        wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::UNIFORM
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    )
}

fn storage(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    )
}

/// A mappable copy of the argmax winner (f32 bits, index).
fn winner(gpu: &Gpu) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    gpu.buffer("winner", 8, usage)
}

impl Activations {
    fn new(
        gpu: &Gpu,
        cfg: &Config,
        kv: KvDtype,
        b: usize,
        logit_rows: usize,
        slots: usize,
    ) -> Result<Self> {
        let (c, f, v, e) = (
            cfg.n_embd,
            cfg.n_inner,
            cfg.vocab_size,
            embedding_width(cfg),
        );
        let h = cfg.heads();
        let f32s = 4;
        let mut kv_cache = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let bytes = slots as u64 * kv_layer_bytes(cfg, kv);
            kv_cache.push(storage(gpu, &format!("kv_cache.{l}"), bytes as usize)?);
        }
        Ok(Activations {
            step: step_uniform(gpu),
            tokens: storage(gpu, "tokens", b * 4)?,
            x: matmul_input(gpu, "x", b * c * f32s)?,
            ln: matmul_input(gpu, "ln", b * c * f32s)?,
            ln2: matmul_input(gpu, "ln2", b * c * f32s)?,
            qkv: storage(gpu, "qkv", b * h.qkv_c() * f32s)?,
            att: matmul_input(gpu, "att", b * h.q_c() * f32s)?,
            fc: matmul_input(gpu, "fc", b * f * f32s)?,
            gate_up: storage(gpu, "gate_up", b * gate_up_width(cfg) * f32s)?,
            emb: matmul_input(gpu, "emb", b * e * f32s)?,
            kv_cache,
            logits: storage(gpu, "logits", logit_rows * v * f32s)?,
            best: storage(gpu, "best", ARGMAX_BYTES)?,
            staging: gpu.buffer(
                "staging",
                (logit_rows * v * f32s) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?,
            winner: [winner(gpu)?, winner(gpu)?],
        })
    }
}

/// What a linear layer does with its result `x·W + b`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Out {
    /// y = x·W + b
    Set,
    /// y = act(x·W + b)
    Act(Activation),
    /// y += x·W + b (the residual add, in the epilogue)
    Add,
}

/// The input rows of a linear layer: a buffer, or the output of a LayerNorm that the one-row
/// kernel may apply itself (see [`Forward::pre_norm`]).
#[derive(Clone, Copy)]
pub(crate) enum Input<'b> {
    Rows(&'b wgpu::Buffer),
    /// `y = LN(src)`: the kernels read `y` for batches and, where they fuse single-token
    /// steps, normalize `src` themselves.
    Normed {
        y: &'b wgpu::Buffer,
        src: &'b wgpu::Buffer,
        norm: &'b Norm,
        eps: f32,
    },
}

impl<'b> From<&'b wgpu::Buffer> for Input<'b> {
    fn from(b: &'b wgpu::Buffer) -> Self {
        Input::Rows(b)
    }
}

impl<'b> Input<'b> {
    fn rows(self) -> &'b wgpu::Buffer {
        match self {
            Input::Rows(b) | Input::Normed { y: b, .. } => b,
        }
    }

    fn fused(self) -> Option<FusedNorm<'b>> {
        match self {
            Input::Rows(_) => None,
            Input::Normed { src, norm, eps, .. } => Some(FusedNorm {
                src,
                gamma: &norm.gamma,
                beta: &norm.beta,
                eps,
                rms: norm.rms,
            }),
        }
    }
}

/// One recorded launch.
enum Op {
    Kernel(Dispatch),
    Linear(MatmulDispatch),
    /// Attention: the kernel for one sequence's tokens, the one for a batch of sequences where
    /// the family has a separate one, and whether that one also takes single-token steps
    /// (`Kernels::attention_decode`).
    Attention(Dispatch, Option<Dispatch>, bool),
}

impl Op {
    /// Records the launch for `n_tokens` rows (`per_row`: of different sequences) and
    /// `n_rows` LM-head rows.
    fn encode(&self, rec: &mut Recorder<'_>, n_tokens: u32, n_rows: u32, per_row: bool) {
        match self {
            Op::Kernel(d) => d.encode(rec, n_tokens, n_rows),
            Op::Linear(m) => m.encode(rec, n_tokens, n_rows),
            Op::Attention(_, Some(rows), decode) if per_row || (*decode && n_tokens == 1) => {
                rows.encode(rec, n_tokens, n_rows)
            }
            Op::Attention(one, ..) => one.encode(rec, n_tokens, n_rows),
        }
    }
}

/// The op builder a family's forward pass is written with: each call records one operation
/// (its pipeline, bind group and grid, made now) in execution order. Buffers are the
/// session's [`Activations`]; shapes are per batch of T tokens.
pub(crate) struct Forward<'g> {
    gpu: &'g Gpu,
    k: &'g Kernels,
    cfg: &'g Config,
    step: &'g wgpu::Buffer,
    max_batch: usize,
    decoder: Vec<Op>,
    head: Vec<Op>,
    /// The LM head over every row of the batch (a batch of sequences), where wanted.
    head_rows: Option<Vec<Op>>,
}

impl<'g> Forward<'g> {
    fn new(
        gpu: &'g Gpu,
        k: &'g Kernels,
        cfg: &'g Config,
        step: &'g wgpu::Buffer,
        max_batch: usize,
    ) -> Self {
        Forward {
            gpu,
            k,
            cfg,
            step,
            max_batch,
            decoder: Vec::new(),
            head: Vec::new(),
            head_rows: None,
        }
    }

    /// `x[t] = wte[tokens[t]] (+ wpe[pos + t])`, one launch per embedding texture.  (T, E)
    pub fn embed(
        &mut self,
        x: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        wte: &RowChunks,
        wpe: Option<&wgpu::Buffer>,
    ) {
        for (m, r0, r1) in &wte.chunks {
            let d = embed(
                self.gpu,
                self.k,
                self.step,
                m.k,
                *r0..*r1,
                m,
                tokens,
                wpe,
                x,
            );
            self.decoder.push(Op::Kernel(d));
        }
    }

    /// `x[t] += wpe[pos + t]`.  (T, C)
    pub fn add_positions(&mut self, x: &wgpu::Buffer, wpe: &wgpu::Buffer) {
        let d = add_positions(self.gpu, self.k, self.step, self.cfg.n_embd, wpe, x);
        self.decoder.push(Op::Kernel(d));
    }

    /// `y = LN(x)·gamma + beta`, launched for every batch.  (T, C)
    pub fn layer_norm(&mut self, y: &wgpu::Buffer, x: &wgpu::Buffer, n: &Norm) {
        self.norm(y, x, n, false);
    }

    /// `y = LN(x)·gamma + beta` feeding the next linear layer: where the kernel family fuses
    /// single-token steps, their LayerNorm is folded into that layer's matrix-vector product
    /// and this launches for batches only. Pass the result to [`Forward::linear`].
    pub fn pre_norm<'b>(
        &mut self,
        y: &'b wgpu::Buffer,
        x: &'b wgpu::Buffer,
        n: &'b Norm,
    ) -> Input<'b> {
        self.norm(y, x, n, true);
        Input::Normed {
            y,
            src: x,
            norm: n,
            eps: self.cfg.layer_norm_epsilon,
        }
    }

    /// The family's final LayerNorm where the model has one: a [`Forward::pre_norm`] where the
    /// head's kernel fuses it (`Kernels::fuses_head_norm`), else a launch for every batch;
    /// without one x itself goes on to the head.
    pub fn final_norm<'b>(
        &mut self,
        y: &'b wgpu::Buffer,
        x: &'b wgpu::Buffer,
        w: &'b Weights,
    ) -> Input<'b> {
        match &w.final_norm {
            Some(n) if self.k.fuses_head_norm() => self.pre_norm(y, x, n),
            Some(n) => {
                self.layer_norm(y, x, n);
                Input::Rows(y)
            }
            None => Input::Rows(x),
        }
    }

    fn norm(&mut self, y: &wgpu::Buffer, x: &wgpu::Buffer, n: &Norm, batches_only: bool) {
        let (c, eps) = (self.cfg.n_embd, self.cfg.layer_norm_epsilon);
        let (g, b, rms) = (&n.gamma, &n.beta, n.rms);
        let d = layer_norm(
            self.gpu,
            self.k,
            self.step,
            c,
            eps,
            rms,
            x,
            g,
            b,
            y,
            batches_only,
        );
        self.decoder.push(Op::Kernel(d));
    }

    /// `y = x·W + b`, then `out` (activation or residual add) in the epilogue; `name` labels
    /// the layer in profiles.  (T, K) → (T, N)
    pub fn linear<'b>(
        &mut self,
        name: &'static str,
        y: &wgpu::Buffer,
        x: impl Into<Input<'b>>,
        w: &Linear,
        out: Out,
    ) {
        let x = x.into();
        let (act, accumulate) = match out {
            Out::Set => (0, false),
            Out::Act(a) => (a.shader_code(), false),
            Out::Add => (0, true),
        };
        let spec = MatmulSpec {
            k: w.w.k,
            n: w.w.n,
            ld_y: w.w.n,
            y_col0: 0,
            act,
            accumulate,
            lm_rows: false,
            max_rows: self.max_batch,
            layer: name,
        };
        let m = matmul(
            self.gpu,
            self.k,
            self.step,
            spec,
            x.rows(),
            &w.w,
            &w.b,
            y,
            x.fused(),
        );
        self.decoder.push(Op::Linear(m));
    }

    /// `y = act(gate) · up` from gu (T, 2F) = [gate | up]: the gated feed-forward.  (T, F)
    pub fn gated(&mut self, y: &wgpu::Buffer, gu: &wgpu::Buffer, act: Activation) {
        let (f, a) = (self.cfg.n_inner, act.shader_code());
        let d = gated(self.gpu, self.k, self.step, f, a, gu, y);
        self.decoder.push(Op::Kernel(d));
    }

    /// Rotates the first `rotary_dims` of every query and key head of qkv (T, Q + 2K) by
    /// their positions, in place; `table`: (n_positions, rotary_dims / 2) (cos, sin).
    pub fn rope(&mut self, qkv: &wgpu::Buffer, table: &wgpu::Buffer, rotary_dims: usize) {
        let h = self.cfg.heads();
        let heads = (h.n_head, h.n_kv_head, h.q_c());
        let (ld, half) = (h.qkv_c(), rotary_dims / 2);
        let d = rope(
            self.gpu, self.k, self.step, ld, h.head_dim, half, heads, qkv, table,
        );
        self.decoder.push(Op::Kernel(d));
    }

    /// Appends the batch's keys and values (the k and v columns of qkv) to the layer's cache.
    /// A single-token step launches nothing here: attention stores them itself then.
    pub fn kv_store(&mut self, qkv: &wgpu::Buffer, cache: &wgpu::Buffer) {
        let (h, p) = (self.cfg.heads(), self.cfg.n_ctx);
        let d = kv_store(self.gpu, self.k, self.step, h, p, qkv, cache);
        self.decoder.push(Op::Kernel(d));
    }

    /// `out = softmax(q·Kᵀ·scale + causal mask)·V` per query head over its key/value head's
    /// cache (each row's own slot and position in a batch of sequences).  (T, Q)
    pub fn attention(&mut self, out: &wgpu::Buffer, qkv: &wgpu::Buffer, cache: &wgpu::Buffer) {
        let cfg = self.cfg;
        let scale = if cfg.scale_attn_weights {
            1.0 / (cfg.head_dim() as f32).sqrt()
        } else {
            1.0
        };
        let (h, p) = (cfg.heads(), cfg.n_ctx);
        let d = attention(self.gpu, self.k, self.step, h, scale, p, qkv, cache, out);
        let rows = attention_rows(self.gpu, self.k, self.step, h, scale, p, qkv, cache, out);
        let decode = self.k.attention_decode();
        self.decoder.push(Op::Attention(d, rows, decode));
    }

    /// `logits = x·headᵀ` for the rows being read back (the step's LM-head window), one
    /// launch per texture of the head.  (R, E) → (R, V)
    pub fn lm_head<'b>(
        &mut self,
        logits: &wgpu::Buffer,
        x: impl Into<Input<'b>>,
        head: &RowChunks,
        zeros: &wgpu::Buffer,
    ) {
        let x = x.into();
        for (m, r0, r1) in &head.chunks {
            let spec = MatmulSpec {
                k: m.k,
                n: r1 - r0,
                ld_y: self.cfg.vocab_size,
                y_col0: *r0,
                act: 0,
                accumulate: false,
                lm_rows: true,
                max_rows: 0,
                layer: "lm_head",
            };
            let d = matmul(
                self.gpu,
                self.k,
                self.step,
                spec,
                x.rows(),
                m,
                zeros,
                logits,
                x.fused(),
            );
            self.head.push(Op::Linear(d));
            // Every row of the batch, with the batch kernels (uniform-window blocks where the
            // family has them): a batched decode step's logits.
            if let Some(rows) = &mut self.head_rows {
                let spec = MatmulSpec {
                    lm_rows: false,
                    max_rows: self.max_batch,
                    ..spec
                };
                let (g, k, s) = (self.gpu, self.k, self.step);
                let d = matmul(g, k, s, spec, x.rows(), m, zeros, logits, x.fused());
                rows.push(Op::Linear(d));
            }
        }
    }
}

/// Everything a session encodes, built once.
pub(crate) struct Plan {
    pub act: Activations,
    pub max_batch: usize,
    pub logit_rows: usize,
    /// Embedding, every layer and the final norm, over the batch's tokens.
    decoder: Vec<Op>,
    /// The LM head, over the rows being read back.
    head: Vec<Op>,
    /// The LM head over all the batch's rows (engine plans only).
    head_rows: Vec<Op>,
    argmax: Option<Argmax>, // where the kernels take the argmax on the GPU
}

impl Plan {
    /// `slots`: for an engine, the sequences its KV cache holds (a plan that also runs batches
    /// of sequences); `None` for a session (one sequence).
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        w: &Weights,
        max_batch: usize,
        logit_rows: usize,
        slots: Option<usize>,
    ) -> Result<Self> {
        let act = Activations::new(gpu, cfg, k.kv, max_batch, logit_rows, slots.unwrap_or(1))?;
        let mut f = Forward::new(gpu, k, cfg, &act.step, max_batch);
        if slots.is_some() {
            f.head_rows = Some(Vec::new());
        }
        crate::model::family::arch(cfg).forward(&mut f, cfg, &act, w);
        let Forward {
            decoder,
            head,
            head_rows,
            ..
        } = f;
        let v = cfg.vocab_size;
        let argmax = argmax(gpu, k, &act.step, v, &act.logits, &act.best, &act.tokens);
        Ok(Plan {
            act,
            max_batch,
            logit_rows,
            decoder,
            head,
            head_rows: head_rows.unwrap_or_default(),
            argmax,
        })
    }

    /// Encodes the decoder for a batch of `t` tokens: embeddings, every layer, final norm;
    /// `per_row`: the rows are tokens of different sequences (the step's [`RowMap`]).
    /// (A single-token step launches no `kv_store`, and where `Kernels::fuses_decode_norm` no
    /// `pre_norm` LayerNorm; the next kernel does that work.)
    pub fn encode_layers(&self, pass: &mut Recorder<'_>, t: u32, per_row: bool) {
        for op in &self.decoder {
            op.encode(pass, t, 0, per_row);
        }
    }

    /// Encodes the LM head for `n_rows` rows starting at `step.row0`: logits (R, V).
    pub fn encode_head(&self, pass: &mut Recorder<'_>, n_rows: u32) {
        for op in &self.head {
            op.encode(pass, 0, n_rows, false);
        }
    }

    /// Encodes the LM head over all `t` rows of the batch (logits (t, V)), with the batch
    /// kernels: a batched decode step's. Engine plans only.
    pub fn encode_head_rows(&self, pass: &mut Recorder<'_>, t: u32) {
        for op in &self.head_rows {
            op.encode(pass, t, 0, true);
        }
    }

    /// Encodes greedy decoding's argmax over the last of `n_rows` logits rows: best[L] =
    /// (max, its first index) (see `kernels::winner`), and tokens[0] = that index (only where
    /// `Kernels::argmax_on_gpu`).
    pub fn encode_argmax(&self, pass: &mut Recorder<'_>, n_rows: u32) {
        if let Some(a) = &self.argmax {
            a.encode(pass, n_rows);
        }
    }
}
