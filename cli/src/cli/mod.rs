//! Argument parsing and dispatch to the subcommands; maps errors to exit codes.
//!
//! Layer: the binary; uses only the library's public API (`wgpt::…`).

mod bench;
mod bench_batch;
mod chat;
mod generate;
mod info;
mod perplexity;
mod sampling;
mod serve;

use std::io::Write;
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgpt::{Gpu, GpuOptions, KernelFamily, KvDtype, LoadOptions, Model, ModelFiles, WeightDtype};

/// Exit code for bad arguments (and `wgpt` without a command).
pub const EXIT_USAGE: i32 = 1;
/// Exit code for bad input files, models or prompts.
pub const EXIT_INPUT: i32 = 2;
/// Exit code for device problems (no adapter, limits, GPU errors).
pub const EXIT_DEVICE: i32 = 3;

#[derive(Parser)]
#[command(
    name = "wgpt",
    version,
    about = "Transformer LM inference (GPT-2, GPT-1, OPT, GPT-NeoX, Llama / Mistral / Qwen2 / SmolLM2) from Hugging Face directories and GGUF files, on wgpu (Vulkan, Metal, DX12, GL, lavapipe)",
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Exit codes: 0 success, 1 usage error (also: no command), 2 input or model error, 3 device error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Converse with a model that has a chat template: one user message per line of input.
    Chat(chat::ChatArgs),
    /// Perplexity and bits per byte of a text file.
    Perplexity(perplexity::PerplexityArgs),
    /// Adapters of every backend, the chosen one's limits and features; the model's config.
    Info(info::InfoArgs),
    /// Prefill and decode speed (llama-bench style).
    Bench(bench::BenchArgs),
    /// OpenAI-compatible HTTP server (completions, chat completions, streaming), decoding
    /// concurrent requests together.
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Adapter selection, shared by every command.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Backend (default: Vulkan, Metal or DX12, else GL; `info` lists all; WGPU_BACKEND is honoured).
    #[arg(long, global = true, value_parser = backend_parser())]
    pub backend: Option<String>,
    /// Use the first adapter whose name contains this (WGPU_ADAPTER_NAME is honoured).
    #[arg(long, global = true)]
    pub adapter: Option<String>,
    /// Prefer a software (CPU) adapter such as lavapipe.
    #[arg(long, global = true)]
    pub cpu: bool,
}

fn backend_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new([
        PossibleValue::new("vulkan").alias("vk"),
        PossibleValue::new("metal").alias("mtl"),
        PossibleValue::new("dx12").alias("d3d12"),
        PossibleValue::new("gl").aliases(["gles", "opengl"]),
    ])
}

impl DeviceArgs {
    pub fn options(&self) -> GpuOptions {
        let mut opts = GpuOptions::default().with_prefer_cpu(self.cpu);
        if let Some(b) = &self.backend {
            // The parser accepts only names wgpu knows.
            opts = opts.with_backends(wgpt::wgpu::Backends::from_comma_list(b));
        }
        if let Some(a) = &self.adapter {
            opts = opts.with_adapter(a.clone());
        }
        opts
    }

    pub fn gpu(&self) -> anyhow::Result<Gpu> {
        Ok(Gpu::new(&self.options())?)
    }
}

/// Model selection, shared by commands that load one.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json), or a
    /// GGUF file (`FILE.gguf`). Default: the TinyShakespeare model built into wgpt.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Weight storage on the GPU: f32, f16, or q8_0 / q4_0 (quantized at load with ggml's
    /// reference quantization; matrices whose rows are not whole 32-weight blocks stay f16).
    /// Default: f16 for f16 files, f32 otherwise; tensors a GGUF file stores quantized keep
    /// their format unless f32 or f16 is asked for.
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<WeightDtype>,
    /// Kernel family: cooperative (workgroup tiles, for GPUs) or barrier-free (for software
    /// adapters). Default: by adapter type.
    #[arg(long, value_parser = parse_kernels)]
    pub kernels: Option<KernelFamily>,
    /// Context in use: positions the KV cache holds (a prompt and its continuation together).
    /// Default: 4096, or the model's context if smaller (as llama.cpp and Ollama); 0 is the
    /// model's whole context (131072 for Llama 3.1 / 3.2). Memory grows with it.
    #[arg(long, value_parser = count_at_least::<0>)]
    pub ctx: Option<usize>,
    /// KV cache storage: f16 (half the memory, llama.cpp's default) or f32 (exact).
    #[arg(long, value_parser = parse_kv, default_value = "f16")]
    pub kv: KvDtype,
}

fn parse_kv(s: &str) -> Result<KvDtype, String> {
    KvDtype::parse(s).ok_or_else(|| format!("`{s}` is not a KV cache type; use f16 or f32"))
}

fn parse_kernels(s: &str) -> Result<KernelFamily, String> {
    KernelFamily::parse(s)
        .ok_or_else(|| format!("`{s}` is not a kernel family; use cooperative or barrier-free"))
}

fn parse_dtype(s: &str) -> Result<WeightDtype, String> {
    match s {
        "f32" => Ok(WeightDtype::F32),
        "f16" => Ok(WeightDtype::F16),
        "q8_0" => Ok(WeightDtype::Q8_0),
        "q4_0" => Ok(WeightDtype::Q4_0),
        _ => Err(format!("`{s}` is not a dtype; use f32, f16, q8_0 or q4_0")),
    }
}

/// A whole number of at least `MIN` (negative numbers reach this check too: the options that
/// use it allow them, so `-1` is not taken for a flag).
pub fn at_least<const MIN: u64>(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if v >= MIN => Ok(v),
        Ok(v) => Err(format!("must be ≥ {MIN}, got {v}")),
        Err(_) if s.parse::<i128>().is_ok() => Err(format!("must be ≥ {MIN}, got {s}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// [`at_least`] as a `usize`.
pub fn count_at_least<const MIN: u64>(s: &str) -> Result<usize, String> {
    let v = at_least::<MIN>(s)?;
    usize::try_from(v).map_err(|_| format!("{v} is too large"))
}

impl ModelArgs {
    /// Opens and checks the model directory, if one was given, before any adapter is opened:
    /// bad files are reported without touching the GPU.
    pub fn open(&self) -> anyhow::Result<Option<ModelFiles>> {
        match &self.model {
            Some(dir) => Ok(Some(ModelFiles::open(dir)?)),
            None => Ok(None),
        }
    }

    /// Loading options from the flags, with `dtype` as the storage dtype, showing the upload's
    /// progress on `bar`.
    pub fn load_options(&self, dtype: Option<WeightDtype>, bar: &ProgressBar) -> LoadOptions {
        let mut opts = LoadOptions::default();
        opts.dtype = dtype;
        opts.kernels = self.kernels;
        opts.ctx = self.ctx;
        opts.kv = Some(self.kv);
        if !bar.is_hidden() {
            let bar = bar.clone();
            opts = opts.with_progress(wgpt::Progress::new(move |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            }));
        }
        opts
    }

    /// Puts the opened directory (or the built-in model when there is none) on `gpu`, with a
    /// progress bar on a terminal unless `quiet`.
    pub fn load(&self, files: Option<ModelFiles>, gpu: &Gpu, quiet: bool) -> anyhow::Result<Model> {
        let bar = progress_bar(quiet, "loading", "{msg} [{bar:30}] {bytes}/{total_bytes}");
        let opts = self.load_options(self.dtype, &bar);
        let model = match files {
            Some(f) => Model::from_files(f, gpu, &opts),
            None => default_model(gpu, &opts),
        };
        bar.finish_and_clear();
        Ok(model?)
    }
}

/// A progress bar on stderr: drawn only when stderr is a terminal, and never when `quiet`
/// (`--json`).
pub fn progress_bar(quiet: bool, message: &'static str, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Hidden unless stderr is a terminal (indicatif checks), so pipes and logs stay clean.
    let target = ProgressDrawTarget::stderr();
    if target.is_hidden() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(0), target)
        .with_style(style)
        .with_message(message)
}

/// The built-in model (the binary always has it: it builds wgpt with `default-model`).
fn default_model(gpu: &Gpu, opts: &LoadOptions) -> wgpt::Result<Model> {
    Model::load_default(gpu, opts)
}

/// Parses arguments, runs the command, prints any error as one line; returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `wgpt` alone: the usage and the list of commands, as a usage error.
            let _ = e.print();
            return EXIT_USAGE;
        }
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
            // --help, --version: to stdout.
            let _ = e.print();
            return 0;
        }
    };
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(()) => 0,
        // A closed stdout (`wgpt generate … | head`) ends quietly, as Unix tools do.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            exit_code(&e)
        }
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Into a buffer first: the generator panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "wgpt", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its sources (wgpu's, the tokenizer's, the OS's) on one line.
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<wgpt::Error>() {
        Some(w) if w.is_device_error() => EXIT_DEVICE,
        _ => EXIT_INPUT,
    }
}
