//! Activations, KV cache and the forward pass. Every buffer and bind group is made once per
//! session ([`Plan::new`]); a forward step writes the step uniform and the token ids, encodes
//! the dispatches below into one command encoder, submits once and reads back the logits.

use crate::config::Config;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::{
    argmax, attention, embed, kv_store, layer_norm, matmul, Argmax, Dispatch, FusedNorm, Kernels,
    MatmulDispatch, MatmulSpec, Recorder, ARGMAX_BYTES, X_WINDOW,
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

/// GPU buffers of one session. B = max batch, R = logits rows per read-back.
pub(crate) struct Activations {
    pub step: wgpu::Buffer,          // Step uniform
    pub tokens: wgpu::Buffer,        // (B) u32; greedy steps leave their token in [0]
    pub x: wgpu::Buffer,             // (B, C) residual stream
    pub ln: wgpu::Buffer,            // (B, C) LayerNorm output
    pub qkv: wgpu::Buffer,           // (B, 3C)
    pub att: wgpu::Buffer,           // (B, C) attention output, heads concatenated
    pub fc: wgpu::Buffer,            // (B, F) MLP hidden
    pub kv_cache: Vec<wgpu::Buffer>, // n_layer × (2, n_positions, C): keys, then values
    pub logits: wgpu::Buffer,        // (R, V)
    pub best: wgpu::Buffer,          // (L + 1, 2) u32 argmax candidates, then the winner
    pub staging: wgpu::Buffer,       // (R, V) mappable copy of logits
    pub winner: [wgpu::Buffer; 2],   // (2) u32 mappable copies of best[L], one per step in flight
}

/// The dispatches of one decoder layer, in execution order.
struct LayerPlan {
    ln_1: Dispatch,
    c_attn: MatmulDispatch,
    kv_store: Dispatch,
    attention: Dispatch,
    attn_proj: MatmulDispatch,
    ln_2: Dispatch,
    c_fc: MatmulDispatch,
    mlp_proj: MatmulDispatch,
}

/// Everything a session encodes, built once.
pub(crate) struct Plan {
    pub act: Activations,
    pub max_batch: usize,
    pub logit_rows: usize,
    embed: Vec<Dispatch>,
    layers: Vec<LayerPlan>,
    ln_f: Dispatch,
    lm_head: Vec<MatmulDispatch>,
    argmax: Option<Argmax>, // where the kernels take the argmax on the GPU
}

/// A matmul input: also bindable as a uniform window (see `matmul_block.wgsl`), with slack.
fn matmul_input(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64 + X_WINDOW,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )
}

/// A mappable copy of the argmax winner (f32 bits, index).
fn winner(gpu: &Gpu) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    gpu.buffer("winner", 8, usage)
}

fn storage(gpu: &Gpu, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
    gpu.buffer(
        label,
        bytes as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    )
}

/// x = LN(src)·gamma + beta, for a matmul that may apply it itself.
fn fused_norm<'b>(src: &'b wgpu::Buffer, n: &'b Norm, eps: f32) -> FusedNorm<'b> {
    FusedNorm {
        src,
        gamma: &n.gamma,
        beta: &n.beta,
        eps,
    }
}

/// Bytes of activations and KV cache a session needs (for limit checks before allocating).
pub(crate) fn session_bytes(cfg: &Config, max_batch: usize, logit_rows: usize) -> u64 {
    let (b, c, f) = (max_batch as u64, cfg.n_embd as u64, cfg.n_inner as u64);
    let kv = 2 * cfg.n_layer as u64 * cfg.n_positions as u64 * c * 4;
    let act = b * (c * 6 + f) * 4;
    kv + act + 2 * logit_rows as u64 * cfg.vocab_size as u64 * 4 + ARGMAX_BYTES as u64 + 2 * 8
}

impl Plan {
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        w: &Weights,
        max_batch: usize,
        logit_rows: usize,
    ) -> Result<Self> {
        let (c, f, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let b = max_batch;
        let f32s = 4;
        let mut kv_cache = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            kv_cache.push(storage(
                gpu,
                &format!("kv_cache.{l}"),
                2 * cfg.n_positions * c * f32s,
            )?);
        }
        let act = Activations {
            step: gpu.uniform(
                "step",
                &Step {
                    n_tokens: 0,
                    pos: 0,
                    row0: 0,
                    n_rows: 0,
                },
            ),
            tokens: storage(gpu, "tokens", b * 4)?,
            x: storage(gpu, "x", b * c * f32s)?,
            ln: matmul_input(gpu, "ln", b * c * f32s)?,
            qkv: storage(gpu, "qkv", b * 3 * c * f32s)?,
            att: matmul_input(gpu, "att", b * c * f32s)?,
            fc: matmul_input(gpu, "fc", b * f * f32s)?,
            kv_cache,
            logits: storage(gpu, "logits", logit_rows * v * f32s)?,
            best: storage(gpu, "best", ARGMAX_BYTES)?,
            staging: gpu.buffer(
                "staging",
                (logit_rows * v * f32s) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?,
            winner: [winner(gpu)?, winner(gpu)?],
        };
        let s = &act.step;
        let eps = cfg.layer_norm_epsilon;
        // Where the kernels fuse single-token steps, LayerNorm and kv_store launch only for
        // batches: the one-row matmul after a LayerNorm normalizes its input itself (`norm`)
        // and attention stores the token's key and value.
        let fused = k.fuses_decode();
        let linear = |layer: &'static str,
                      l: &Linear,
                      x: &wgpu::Buffer,
                      y: &wgpu::Buffer,
                      act_code: u32,
                      accumulate: bool,
                      norm: Option<FusedNorm<'_>>| {
            let spec = MatmulSpec {
                k: l.k,
                n: l.n,
                ld_y: l.n,
                y_col0: 0,
                act: act_code,
                accumulate,
                lm_rows: false,
                max_rows: max_batch,
                layer,
            };
            matmul(gpu, k, s, spec, w.dtype, x, &l.w, &l.b, y, norm)
        };
        let scale = if cfg.scale_attn_weights {
            1.0 / (cfg.head_dim() as f32).sqrt()
        } else {
            1.0
        };
        let gelu = cfg.activation.shader_code();
        let layers = w
            .layers
            .iter()
            .enumerate()
            .map(|(l, lw)| LayerPlan {
                ln_1: layer_norm(
                    gpu,
                    k,
                    s,
                    c,
                    eps,
                    &act.x,
                    &lw.ln_1.gamma,
                    &lw.ln_1.beta,
                    &act.ln,
                    fused,
                ),
                c_attn: linear(
                    "c_attn",
                    &lw.c_attn,
                    &act.ln,
                    &act.qkv,
                    0,
                    false,
                    Some(fused_norm(&act.x, &lw.ln_1, eps)),
                ),
                kv_store: kv_store(
                    gpu,
                    k,
                    s,
                    c,
                    cfg.n_positions,
                    &act.qkv,
                    &act.kv_cache[l],
                    fused,
                ),
                attention: attention(
                    gpu,
                    k,
                    s,
                    c,
                    cfg.n_head,
                    scale,
                    cfg.n_positions,
                    &act.qkv,
                    &act.kv_cache[l],
                    &act.att,
                ),
                attn_proj: linear("attn_proj", &lw.attn_proj, &act.att, &act.x, 0, true, None),
                ln_2: layer_norm(
                    gpu,
                    k,
                    s,
                    c,
                    eps,
                    &act.x,
                    &lw.ln_2.gamma,
                    &lw.ln_2.beta,
                    &act.ln,
                    fused,
                ),
                c_fc: linear(
                    "c_fc",
                    &lw.c_fc,
                    &act.ln,
                    &act.fc,
                    gelu,
                    false,
                    Some(fused_norm(&act.x, &lw.ln_2, eps)),
                ),
                mlp_proj: linear("mlp_proj", &lw.mlp_proj, &act.fc, &act.x, 0, true, None),
            })
            .collect();
        let embed = w
            .wte
            .chunks
            .iter()
            .map(|(buf, r0, r1)| {
                embed(
                    gpu,
                    k,
                    s,
                    c,
                    *r0..*r1,
                    w.dtype,
                    buf,
                    &act.tokens,
                    &w.wpe,
                    &act.x,
                )
            })
            .collect();
        let ln_f = layer_norm(
            gpu,
            k,
            s,
            c,
            eps,
            &act.x,
            &w.ln_f.gamma,
            &w.ln_f.beta,
            &act.ln,
            fused,
        );
        let head: &RowChunks = w.head();
        let lm_head = head
            .chunks
            .iter()
            .map(|(buf, r0, r1)| {
                let spec = MatmulSpec {
                    k: c,
                    n: r1 - r0,
                    ld_y: v,
                    y_col0: *r0,
                    act: 0,
                    accumulate: false,
                    lm_rows: true,
                    max_rows: 0,
                    layer: "lm_head",
                };
                matmul(
                    gpu,
                    k,
                    s,
                    spec,
                    w.dtype,
                    &act.ln,
                    buf,
                    &w.zero_bias,
                    &act.logits,
                    Some(fused_norm(&act.x, &w.ln_f, eps)),
                )
            })
            .collect();
        let argmax = argmax(gpu, k, s, v, &act.logits, &act.best, &act.tokens);
        Ok(Plan {
            act,
            max_batch,
            logit_rows,
            embed,
            layers,
            ln_f,
            lm_head,
            argmax,
        })
    }

    /// Encodes the decoder for a batch of `t` tokens: embeddings, every layer, final LayerNorm.
    /// (†: with the cooperative kernels a single-token step launches nothing here; the next
    /// kernel does it, see `Kernels::fuses_decode`.)
    pub fn encode_layers(&self, pass: &mut Recorder<'_>, t: u32) {
        for d in &self.embed {
            d.encode(pass, t, 0); // x = wte[tokens] + wpe[pos..]          (T, C)
        }
        for l in &self.layers {
            l.ln_1.encode(pass, t, 0); // ln = LN1(x) †                       (T, C)
            l.c_attn.encode(pass, t, 0); // qkv = ln·Wqkv + b                   (T, 3C)
            l.kv_store.encode(pass, t, 0); // cache[pos..pos+T] = k, v †
            l.attention.encode(pass, t, 0); // att = softmax(q·Kᵀ/√d + mask)·V   (T, C)
            l.attn_proj.encode(pass, t, 0); // x += att·Wo + bo
            l.ln_2.encode(pass, t, 0); // ln = LN2(x) †                       (T, C)
            l.c_fc.encode(pass, t, 0); // fc = gelu(ln·W1 + b1)               (T, F)
            l.mlp_proj.encode(pass, t, 0); // x += fc·W2 + b2
        }
        self.ln_f.encode(pass, t, 0); // ln = LN_f(x) †                      (T, C)
    }

    /// Encodes the LM head for `n_rows` rows starting at `step.row0`: logits = ln·wteᵀ (R, V).
    pub fn encode_head(&self, pass: &mut Recorder<'_>, n_rows: u32) {
        for d in &self.lm_head {
            d.encode(pass, 0, n_rows);
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
