//! Argument parsing and dispatch to the subcommands; maps errors to exit codes.

mod bench;
mod generate;
mod info;
mod perplexity;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wgpt::{Gpu, GpuOptions, KernelFamily, LoadOptions, Model, ModelFiles, WeightDtype};

/// Exit code for bad arguments.
pub const EXIT_USAGE: i32 = 1;
/// Exit code for bad input files, models or prompts.
pub const EXIT_INPUT: i32 = 2;
/// Exit code for device problems (no adapter, limits, GPU errors).
pub const EXIT_DEVICE: i32 = 3;

#[derive(Parser)]
#[command(
    name = "wgpt",
    version,
    about = "Transformer LM inference (GPT-2, GPT-1, OPT, GPT-NeoX) on wgpu (Vulkan, Metal, DX12, GL, lavapipe)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Perplexity and bits per byte of a text file.
    Perplexity(perplexity::PerplexityArgs),
    /// Adapters, limits and features; the model's parameters and memory.
    Info(info::InfoArgs),
    /// Prefill and decode speed (llama-bench style).
    Bench(bench::BenchArgs),
}

/// Adapter selection, shared by every command.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Backend: vulkan, metal, dx12 or gl (default: all; WGPU_BACKEND is honoured).
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Use the first adapter whose name contains this (WGPU_ADAPTER_NAME is honoured).
    #[arg(long, global = true)]
    pub adapter: Option<String>,
    /// Prefer a software (CPU) adapter such as lavapipe.
    #[arg(long, global = true)]
    pub cpu: bool,
}

impl DeviceArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
            prefer_cpu: self.cpu,
        }
    }

    pub fn gpu(&self) -> anyhow::Result<Gpu> {
        Ok(Gpu::new(&self.options())?)
    }
}

/// Model selection, shared by commands that load one.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    /// Default: the TinyShakespeare model built into wgpt.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Weight storage on the GPU (default: f16 for f16 files, f32 otherwise).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<WeightDtype>,
    /// Kernel family: cooperative (workgroup tiles, for GPUs) or barrier-free (for software
    /// adapters). Default: by adapter type.
    #[arg(long, value_parser = parse_kernels)]
    pub kernels: Option<KernelFamily>,
}

fn parse_kernels(s: &str) -> Result<KernelFamily, String> {
    KernelFamily::parse(s)
        .ok_or_else(|| format!("`{s}` is not a kernel family; use cooperative or barrier-free"))
}

fn parse_dtype(s: &str) -> Result<WeightDtype, String> {
    match s {
        "f32" => Ok(WeightDtype::F32),
        "f16" => Ok(WeightDtype::F16),
        _ => Err(format!("`{s}` is not a dtype; use f32 or f16")),
    }
}

impl ModelArgs {
    /// Opens and checks the model directory, if one was given, before any adapter is opened:
    /// bad files are reported without touching the GPU.
    pub fn open(&self) -> anyhow::Result<Option<ModelFiles>> {
        match &self.model {
            Some(dir) if !dir.is_dir() => Err(wgpt::Error::InvalidInput(format!(
                "model directory {} does not exist",
                dir.display()
            ))
            .into()),
            Some(dir) => Ok(Some(ModelFiles::open(dir)?)),
            None => Ok(None),
        }
    }

    /// Loading options from the flags, with `dtype` as the storage dtype.
    pub fn load_options(&self, dtype: Option<WeightDtype>) -> LoadOptions {
        LoadOptions {
            dtype,
            kernels: self.kernels,
            ..Default::default()
        }
    }

    /// Puts the opened directory (or the built-in model when there is none) on `gpu`.
    pub fn load(&self, files: Option<ModelFiles>, gpu: &Gpu) -> anyhow::Result<Model> {
        let opts = self.load_options(self.dtype);
        match files {
            Some(f) => Ok(Model::from_files(f, gpu, &opts)?),
            None => default_model(gpu, &opts),
        }
    }
}

#[cfg(feature = "default-model")]
fn default_model(gpu: &Gpu, opts: &LoadOptions) -> anyhow::Result<Model> {
    Ok(Model::load_default(gpu, opts)?)
}

#[cfg(not(feature = "default-model"))]
fn default_model(_gpu: &Gpu, _opts: &LoadOptions) -> anyhow::Result<Model> {
    Err(wgpt::Error::InvalidInput(
        "this build has no built-in model (feature `default-model`); pass --model DIR".into(),
    )
    .into())
}

/// Parses arguments, runs the command, prints any error as one line; returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line, like every other error (clap adds a "try --help" line).
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{}", first.join(" "));
            return EXIT_USAGE;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            exit_code(&e)
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.to_string().replace('\n', " ")
}

fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<wgpt::Error>() {
        Some(w) if w.is_device_error() => EXIT_DEVICE,
        Some(_) => EXIT_INPUT,
        None => EXIT_INPUT,
    }
}
