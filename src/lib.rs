//! # wgpt
//!
//! Transformer language-model inference (GPT-2, GPT-1, OPT, GPT-NeoX / Pythia) on the GPU
//! with [wgpu] and WGSL compute shaders: point it at a Hugging Face model directory and get
//! logits, perplexity or generated text on any adapter wgpu reaches (Vulkan, Metal, DX12, GL,
//! or a software adapter such as lavapipe).
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
//! [`Session`] (KV cache; `forward`, `generate`), [`Sampler`], [`perplexity()`].

pub mod chat;
pub mod config;
pub mod error;
pub mod generation;
pub mod gpu;
pub mod kernels;
pub mod loader;
pub mod model;
pub mod perplexity;
pub mod reference;
pub mod sampler;
pub mod session;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message};
pub use config::{Activation, Config};
pub use config::{Family, RopeScaling};
pub use error::{Error, Result};
pub use generation::{GeneratedToken, Generation, StopReason};
pub use gpu::{AdapterSummary, Gpu, GpuOptions};
pub use kernels::{KernelFamily, WeightDtype};
pub use loader::DType;
pub use model::{LoadOptions, Model, ModelFiles, ModelInfo};
pub use perplexity::{perplexity, Perplexity};
pub use sampler::{Sampler, SamplerConfig};
pub use session::{HostTimes, Session};
pub use tokenizer::Tokenizer;
