//! # wgpt
//!
//! Transformer language-model inference on the GPU with [wgpu](https://wgpu.rs) and WGSL
//! compute shaders: GPT-2, GPT-1, OPT, GPT-NeoX / Pythia and the Llama family (Llama 2 / 3.x,
//! TinyLlama, Mistral, Qwen2 / 2.5, SmolLM2). Point it at a Hugging Face model directory or a
//! GGUF file (llama.cpp's, quantized or not) and get logits, perplexity or generated text on
//! any adapter wgpu reaches (Vulkan, Metal, DX12, GL, or a software adapter such as
//! lavapipe).
//!
//! ```no_run
//! use wgpt::{Gpu, GpuOptions, LoadOptions, Model, SamplerConfig};
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! let model = Model::load("models/gpt2", &gpu, &LoadOptions::default())?;
//! let mut session = model.session()?;
//! // Low level: logits of the last position.
//! let ids = model.tokenizer().unwrap().encode("Hello world")?;
//! let logits = session.forward(&ids)?;
//! assert_eq!(logits.len(), model.config().vocab_size);
//! // High level: streamed generation.
//! for t in session.generate("Hello", SamplerConfig::default(), 16)? {
//!     print!("{}", t?.text);
//! }
//! # Ok::<(), wgpt::Error>(())
//! ```
//!
//! The pieces: [`Gpu`] (adapter and device), [`Model`] (config, tokenizer, weights on the GPU),
//! [`Session`] (KV cache; `forward`, `generate`, `generate_continue`), [`Sampler`],
//! [`perplexity()`]. The example of `docs/library.md` runs as a doc-test on the built-in model.
//!
//! Cargo features: `default-model` (the built-in TinyShakespeare model, [`Model::load_default`];
//! on by default) and `server` (the OpenAI-compatible HTTP server, `serve`; off by default).
//! The `wgpt` command line is a crate of its own (`wgpt-cli`, in `cli/`), so a library user
//! builds no argument parser, HTTP server or async runtime.
//!
//! wgpt re-exports [`wgpu`], so a program that shares its device ([`Gpu::from_wgpu`]) uses the
//! exact version wgpt was built with.

#![warn(missing_docs)]

// The layers, from the leaves up (each folder's module docs say what it may import):
// error, util → format → gpu → kernels → config → tokenizer, chat (template) → model →
// session, generation, sampler, perplexity, engine → conversation.
mod chat;
mod config;
mod conversation;
mod engine;
mod error;
mod format;
mod generation;
mod gpu;
mod kernels;
mod model;
mod perplexity;
#[cfg(test)]
mod reference;
mod sampler;
#[cfg(feature = "server")]
mod server;
mod session;
#[cfg(test)]
mod shader_translation;
mod tokenizer;
mod util;

pub use wgpu;

// Errors.
pub use error::{BoxError, Error, Result};

// The device.
pub use gpu::{AdapterSummary, Gpu, GpuOptions, Progress};

// Models: files, configs, loading options, what is on the GPU.
pub use config::{Activation, Config, MlpKind, NormKind, Rope, RopeScaling, DEFAULT_CONTEXT};

pub use format::DType;
pub use kernels::{KernelFamily, KvDtype, WeightDtype};
pub use model::{inspect_gguf, inspect_safetensors, presets};
pub use model::{LoadOptions, Model, ModelFiles, ModelInfo, DEFAULT_MAX_MEMORY_BYTES};

// Text: tokenizers and chat templates.
pub use chat::{ChatTemplate, Message};
pub use tokenizer::{StreamDecoder, Tokenizer};

// Running a model: sessions, generation, sampling, scoring, chat, batches of sequences.
pub use conversation::Conversation;
pub use engine::{ConstraintFactory, Engine, TokenConstraint};
pub use engine::{SequenceId, SequenceOutput, SequenceParams, TokenLogprobs};

/// The step loop of a GPU thread that serves requests from other threads (what `wgpt serve`
/// runs): admission, queueing, cancellation, chunked prefill and the prefix cache over an
/// [`Engine`].
pub mod scheduler {
    pub use crate::engine::{Counters, Event, Job, Observer, Reply, Scheduler};
}
pub use generation::{GeneratedToken, Generation, StopReason};
pub use perplexity::{perplexity, perplexity_with_progress, Perplexity};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use session::{HostTimes, Session};

// Serving the OpenAI API (feature `server`).
#[cfg(feature = "server")]
pub use server::{serve, ServerOptions};

/// The library example of `docs/library.md`, compiled and run as a doc-test (on the built-in
/// model).
#[cfg(all(doctest, feature = "default-model"))]
#[doc = include_str!("../docs/library.md")]
pub struct LibraryDocDoctests;
