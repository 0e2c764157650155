//! The op builder the families' forward passes are written with ([`Forward`]) and the
//! recorded plan a session encodes ([`Plan`]), over the buffers of `activations.rs`.
//! Every buffer and bind group is made once per session ([`Plan::new`]); a forward step
//! writes the step uniform and the token ids, encodes the recorded dispatches into one command
//! encoder, submits once and reads back the logits.

pub(crate) use super::activations::{Activations, Cache};
use crate::config::{Activation, Config};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::{
    add_positions, argmax, attention, attention_rows, embed, gated, head_norm, kv_store,
    layer_norm, matmul, rope, softcap, Argmax, Attend, Dispatch, FusedNorm, Kernels,
    MatmulDispatch, MatmulSpec, Recorder,
};
use crate::model::weights::{Linear, Norm, RowChunks, Weights};

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
    /// kv_store, and whether batches of sequences skip it (attention_decode.wgsl stores each
    /// row's key and value itself).
    KvStore(Dispatch, bool),
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
            Op::KvStore(_, true) if per_row => {}
            Op::KvStore(d, _) => d.encode(rec, n_tokens, n_rows),
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
        self.embed_scaled(x, tokens, wte, wpe, 1.0);
    }

    /// `x[t] = wte[tokens[t]]·scale (+ wpe[pos + t])`: [`Forward::embed`] with a multiplier
    /// (Gemma's √C).  (T, E)
    pub fn embed_scaled(
        &mut self,
        x: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        wte: &RowChunks,
        wpe: Option<&wgpu::Buffer>,
        scale: f32,
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
                scale,
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
        self.norm(y, x, n, (false, false));
    }

    /// `y += LN(x)·gamma + beta`: a norm on a residual branch (Gemma's post-attention and
    /// post-feed-forward norms).  (T, C)
    pub fn add_norm(&mut self, y: &wgpu::Buffer, x: &wgpu::Buffer, n: &Norm) {
        self.norm(y, x, n, (true, false));
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
        self.norm(y, x, n, (false, true));
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

    /// `(add, batches_only)`: see `kernels::layer_norm`.
    fn norm(&mut self, y: &wgpu::Buffer, x: &wgpu::Buffer, n: &Norm, how: (bool, bool)) {
        let (c, eps) = (self.cfg.n_embd, self.cfg.layer_norm_epsilon);
        let (g, b, rms) = (&n.gamma, &n.beta, n.rms);
        let d = layer_norm(self.gpu, self.k, self.step, c, eps, rms, x, g, b, y, how);
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

    /// RMSNorm of every query head of qkv by `q_norm` and every key head by `k_norm`, in
    /// place (Qwen3's and Gemma 3's q / k norms).  (T, Q + 2K)
    pub fn head_norm(&mut self, qkv: &wgpu::Buffer, q_norm: &Norm, k_norm: &Norm) {
        let (h, eps) = (self.cfg.heads(), self.cfg.layer_norm_epsilon);
        let (q, k) = (&q_norm.gamma, &k_norm.gamma);
        let d = head_norm(self.gpu, self.k, self.step, h, eps, qkv, q, k);
        self.decoder.push(Op::Kernel(d));
    }

    /// Appends the batch's keys and values (the k and v columns of qkv) to the layer's cache.
    /// A single-token step launches nothing here, nor, where `Kernels::attention_decode`, a
    /// batch of sequences: attention stores them itself then.
    pub fn kv_store(&mut self, qkv: &wgpu::Buffer, cache: &Cache) {
        let h = self.cfg.heads();
        let d = kv_store(self.gpu, self.k, self.step, h, cache.rows, qkv, &cache.buf);
        self.decoder.push(Op::KvStore(d, self.k.attention_decode()));
    }

    /// `out = softmax(cap(q·Kᵀ·scale) + mask)·V` per query head over its key/value head's
    /// cache (each row's own slot and position in a batch of sequences): the causal mask, and
    /// the layer's sliding window where it has one; the cap where the model soft-caps.  (T, Q)
    pub fn attention(&mut self, out: &wgpu::Buffer, qkv: &wgpu::Buffer, cache: &Cache) {
        let cfg = self.cfg;
        let how = Attend {
            scale: cfg.attention_scale(),
            softcap: cfg.attn_softcap,
            window: cache.window,
            rows: cache.rows,
        };
        let (h, kv) = (cfg.heads(), &cache.buf);
        // The profile tells windowed layers from global ones where a model mixes them.
        let label = match (cache.window, cfg.windows.iter().any(Option::is_some)) {
            (Some(_), _) => "sliding-window",
            (None, true) => "global",
            (None, false) => "",
        };
        let d = attention(self.gpu, self.k, self.step, h, how, qkv, kv, out).for_layer(label);
        let rows = attention_rows(self.gpu, self.k, self.step, h, how, qkv, kv, out)
            .map(|r| r.for_layer(label));
        let decode = self.k.attention_decode();
        self.decoder.push(Op::Attention(d, rows, decode));
    }

    /// `logits = cap·tanh(logits / cap)`, after [`Forward::lm_head`] (Gemma 2's final
    /// soft-capping).  (R, V)
    pub fn softcap_logits(&mut self, logits: &wgpu::Buffer, cap: f32) {
        let v = self.cfg.vocab_size;
        let d = softcap(self.gpu, self.k, self.step, v, cap, logits, false);
        self.head.push(Op::Kernel(d));
        if let Some(rows) = &mut self.head_rows {
            let d = softcap(self.gpu, self.k, self.step, v, cap, logits, true);
            rows.push(Op::Kernel(d));
        }
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
    /// (A single-token step launches no `kv_store` (nor a batch of sequences where
    /// `Kernels::attention_decode`), and where `Kernels::fuses_decode_norm` no `pre_norm`
    /// LayerNorm; the next kernel does that work.)
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
