//! The `config.json` (and `generation_config.json`) of published checkpoints, copied as the
//! Hugging Face Hub serves them into `tests/fixtures/configs/<owner>__<name>/`, each parsed by
//! `Config::from_file` and checked against the table below: what wgpt reads from them, or
//! why it refuses them. No GPU and no weights. `tests/fixtures/configs/README.md` says where
//! each file was checked.

use std::collections::BTreeSet;
use std::path::Path;

use wgpt::{Config, RopeScaling};

/// How positions enter the model, with the settings the config gives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Positions {
    /// Learned position embeddings (GPT-2, GPT-1, OPT).
    Learned,
    /// GPT-NeoX rotary on the first `rotary_dims` of each head.
    NeoX { rotary_dims: usize, base: f64 },
    /// Llama-family rotary on whole heads, no frequency scaling.
    Rope { theta: f64 },
    /// Llama-family rotary with `rope_type: llama3` scaling.
    Llama3 {
        theta: f64,
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// What a config that parses must give.
#[derive(Debug, PartialEq)]
struct Shape<'a> {
    n_positions: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    n_layer: usize,
    n_embd: usize,
    vocab_size: usize,
    tie_word_embeddings: bool,
    /// `eos_token_id` of config.json, then those generation_config.json adds.
    eos_token_ids: &'a [u32],
    positions: Positions,
}

enum Expect {
    Parses(Shape<'static>),
    /// The error's text contains every one of these.
    Refused(&'static [&'static str]),
}

/// The model types every refusal of an unknown `model_type` lists.
const LISTS_SUPPORTED: [&str; 5] = ["mistral", "qwen2", "qwen3", "gemma2", "phi3"];

const LLAMA3_1B: Positions = Positions::Llama3 {
    theta: 500_000.0,
    factor: 32.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192.0,
};

/// One row per directory of `tests/fixtures/configs`.
const CASES: &[(&str, Expect)] = &[
    (
        "meta-llama__Llama-3.2-1B",
        Expect::Parses(Shape {
            n_positions: 131_072,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 64,
            n_layer: 16,
            n_embd: 2048,
            vocab_size: 128_256,
            tie_word_embeddings: true,
            eos_token_ids: &[128_001],
            positions: LLAMA3_1B,
        }),
    ),
    (
        "meta-llama__Llama-3.2-1B-Instruct",
        Expect::Parses(Shape {
            n_positions: 131_072,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 64,
            n_layer: 16,
            n_embd: 2048,
            vocab_size: 128_256,
            tie_word_embeddings: true,
            // <|end_of_text|>, <|eom_id|>, <|eot_id|>.
            eos_token_ids: &[128_001, 128_008, 128_009],
            positions: LLAMA3_1B,
        }),
    ),
    (
        "meta-llama__Llama-3.1-8B",
        Expect::Parses(Shape {
            n_positions: 131_072,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 128,
            n_layer: 32,
            n_embd: 4096,
            vocab_size: 128_256,
            tie_word_embeddings: false,
            eos_token_ids: &[128_001],
            positions: Positions::Llama3 {
                theta: 500_000.0,
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        }),
    ),
    (
        "meta-llama__Llama-2-7b-hf",
        Expect::Parses(Shape {
            n_positions: 4096,
            n_head: 32,
            n_kv_head: 32,
            head_dim: 128,
            n_layer: 32,
            n_embd: 4096,
            vocab_size: 32_000,
            tie_word_embeddings: false,
            eos_token_ids: &[2],
            // No `rope_theta` key: the default.
            positions: Positions::Rope { theta: 10_000.0 },
        }),
    ),
    (
        "TinyLlama__TinyLlama-1.1B-Chat-v1.0",
        Expect::Parses(Shape {
            n_positions: 2048,
            n_head: 32,
            n_kv_head: 4,
            head_dim: 64,
            n_layer: 22,
            n_embd: 2048,
            vocab_size: 32_000,
            tie_word_embeddings: false,
            eos_token_ids: &[2],
            positions: Positions::Rope { theta: 10_000.0 },
        }),
    ),
    (
        "mistralai__Mistral-7B-v0.1",
        Expect::Parses(Shape {
            // max_position_embeddings 32768, with attention over a `sliding_window` of 4096
            // positions on every layer (`Config::windows`).
            n_positions: 32_768,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 128,
            n_layer: 32,
            n_embd: 4096,
            vocab_size: 32_000,
            tie_word_embeddings: false,
            eos_token_ids: &[2],
            positions: Positions::Rope { theta: 10_000.0 },
        }),
    ),
    (
        "mistralai__Mistral-7B-v0.3",
        Expect::Parses(Shape {
            // `sliding_window` is null: the whole context.
            n_positions: 32_768,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 128,
            n_layer: 32,
            n_embd: 4096,
            vocab_size: 32_768,
            tie_word_embeddings: false,
            eos_token_ids: &[2],
            positions: Positions::Rope { theta: 1_000_000.0 },
        }),
    ),
    (
        "Qwen__Qwen2.5-0.5B",
        Expect::Parses(Shape {
            // `sliding_window` is set but `use_sliding_window` is false.
            n_positions: 32_768,
            n_head: 14,
            n_kv_head: 2,
            head_dim: 64,
            n_layer: 24,
            n_embd: 896,
            vocab_size: 151_936,
            tie_word_embeddings: true,
            eos_token_ids: &[151_643],
            positions: Positions::Rope { theta: 1_000_000.0 },
        }),
    ),
    (
        "Qwen__Qwen2.5-7B-Instruct",
        Expect::Parses(Shape {
            n_positions: 32_768,
            n_head: 28,
            n_kv_head: 4,
            head_dim: 128,
            n_layer: 28,
            n_embd: 3584,
            vocab_size: 152_064,
            tie_word_embeddings: false,
            // <|im_end|> from config.json, <|endoftext|> from generation_config.json.
            eos_token_ids: &[151_645, 151_643],
            positions: Positions::Rope { theta: 1_000_000.0 },
        }),
    ),
    (
        "Qwen__Qwen2.5-7B-Instruct-1M",
        Expect::Parses(Shape {
            n_positions: 1_010_000,
            n_head: 28,
            n_kv_head: 4,
            head_dim: 128,
            n_layer: 28,
            n_embd: 3584,
            vocab_size: 152_064,
            tie_word_embeddings: false,
            eos_token_ids: &[151_645, 151_643],
            positions: Positions::Rope {
                theta: 10_000_000.0,
            },
        }),
    ),
    (
        "HuggingFaceTB__SmolLM2-135M",
        Expect::Parses(Shape {
            n_positions: 8192,
            n_head: 9,
            n_kv_head: 3,
            head_dim: 64,
            n_layer: 30,
            n_embd: 576,
            vocab_size: 49_152,
            tie_word_embeddings: true,
            eos_token_ids: &[0],
            positions: Positions::Rope { theta: 100_000.0 },
        }),
    ),
    (
        "HuggingFaceTB__SmolLM2-1.7B-Instruct",
        Expect::Parses(Shape {
            n_positions: 8192,
            n_head: 32,
            n_kv_head: 32,
            head_dim: 64,
            n_layer: 24,
            n_embd: 2048,
            vocab_size: 49_152,
            tie_word_embeddings: true,
            // <|im_end|>.
            eos_token_ids: &[2],
            positions: Positions::Rope { theta: 130_000.0 },
        }),
    ),
    (
        "openai-community__gpt2",
        Expect::Parses(Shape {
            n_positions: 1024,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            n_layer: 12,
            n_embd: 768,
            vocab_size: 50_257,
            tie_word_embeddings: true,
            eos_token_ids: &[50_256],
            positions: Positions::Learned,
        }),
    ),
    (
        "openai-community__gpt2-xl",
        Expect::Parses(Shape {
            n_positions: 1024,
            n_head: 25,
            n_kv_head: 25,
            head_dim: 64,
            n_layer: 48,
            n_embd: 1600,
            vocab_size: 50_257,
            tie_word_embeddings: true,
            eos_token_ids: &[50_256],
            positions: Positions::Learned,
        }),
    ),
    (
        "distilbert__distilgpt2",
        Expect::Parses(Shape {
            n_positions: 1024,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            n_layer: 6,
            n_embd: 768,
            vocab_size: 50_257,
            tie_word_embeddings: true,
            eos_token_ids: &[50_256],
            positions: Positions::Learned,
        }),
    ),
    (
        "openai-community__openai-gpt",
        Expect::Parses(Shape {
            n_positions: 512,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            n_layer: 12,
            n_embd: 768,
            vocab_size: 40_478,
            tie_word_embeddings: true,
            // GPT-1 has no end-of-text token.
            eos_token_ids: &[],
            positions: Positions::Learned,
        }),
    ),
    (
        "facebook__opt-125m",
        Expect::Parses(Shape {
            n_positions: 2048,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            n_layer: 12,
            n_embd: 768,
            vocab_size: 50_272,
            tie_word_embeddings: true,
            eos_token_ids: &[2],
            positions: Positions::Learned,
        }),
    ),
    (
        "facebook__opt-350m",
        Expect::Parses(Shape {
            n_positions: 2048,
            n_head: 16,
            n_kv_head: 16,
            head_dim: 64,
            n_layer: 24,
            n_embd: 1024,
            vocab_size: 50_272,
            tie_word_embeddings: true,
            eos_token_ids: &[2],
            positions: Positions::Learned,
        }),
    ),
    (
        "EleutherAI__pythia-160m",
        Expect::Parses(Shape {
            n_positions: 2048,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            n_layer: 12,
            n_embd: 768,
            vocab_size: 50_304,
            tie_word_embeddings: false,
            eos_token_ids: &[0],
            // rotary_pct 0.25 of 64.
            positions: Positions::NeoX {
                rotary_dims: 16,
                base: 10_000.0,
            },
        }),
    ),
    // The families of issue K.
    ("Qwen__Qwen3-0.6B", QWEN3),
    ("google__gemma-3-1b-it", GEMMA3),
    ("microsoft__Phi-3-mini-128k-instruct", PHI3),
    // A family wgpt does not run: Gemma 1 (no post-norms, no soft-caps; `gemma`).
    ("google__gemma-2b", Expect::Refused(&["model_type `gemma`"])),
];

/// QWEN3: the Hub's config as wgpt reads it.
const QWEN3: Expect = Expect::Parses(Shape {
    n_positions: 40_960,
    n_head: 16,
    n_kv_head: 8,
    head_dim: 128,
    n_layer: 28,
    n_embd: 1024,
    vocab_size: 151_936,
    tie_word_embeddings: true,
    eos_token_ids: &[151_645],
    positions: Positions::Rope { theta: 1_000_000.0 },
});
/// GEMMA3: the Hub's config as wgpt reads it.
const GEMMA3: Expect = Expect::Parses(Shape {
    n_positions: 32_768,
    n_head: 4,
    n_kv_head: 1,
    head_dim: 256,
    n_layer: 26,
    n_embd: 1152,
    vocab_size: 262_144,
    tie_word_embeddings: true,
    eos_token_ids: &[1, 106],
    positions: Positions::Rope { theta: 1_000_000.0 },
});
/// PHI3: the Hub's config as wgpt reads it.
const PHI3: Expect = Expect::Parses(Shape {
    n_positions: 131_072,
    n_head: 32,
    n_kv_head: 32,
    head_dim: 96,
    n_layer: 32,
    n_embd: 3072,
    vocab_size: 32_064,
    tie_word_embeddings: false,
    eos_token_ids: &[32_000],
    positions: Positions::Rope { theta: 10_000.0 },
});

#[test]
fn published_configs_parse_as_expected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configs");
    let dirs: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let rows: BTreeSet<String> = CASES.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(CASES.len(), rows.len(), "a directory has two rows in CASES");
    let mut failures = Vec::new();
    for dir in dirs.difference(&rows) {
        failures.push(format!("{dir}: a directory with no row in CASES"));
    }
    for row in rows.difference(&dirs) {
        failures.push(format!("{row}: a row in CASES with no directory"));
    }

    for (name, expect) in CASES.iter().filter(|(name, _)| dirs.contains(*name)) {
        let dir = root.join(name);
        let file = format!("{name}/config.json");
        let parsed = Config::from_file(&dir.join("config.json")).and_then(|mut config| {
            config.add_generation_config(&dir.join("generation_config.json"))?;
            Ok(config)
        });
        match (expect, parsed) {
            (Expect::Parses(want), Ok(config)) => {
                // Rotary on part of each head is NeoX's; on whole heads, the Llama family's.
                let positions = match &config.rope {
                    None => Some(Positions::Learned),
                    Some(r) if r.dims < config.head_dim() => Some(Positions::NeoX {
                        rotary_dims: r.dims,
                        base: r.theta,
                    }),
                    Some(r) => match r.scaling {
                        RopeScaling::None => Some(Positions::Rope { theta: r.theta }),
                        RopeScaling::Llama3 {
                            factor,
                            low_freq_factor,
                            high_freq_factor,
                            original_max_position_embeddings,
                        } => Some(Positions::Llama3 {
                            theta: r.theta,
                            factor,
                            low_freq_factor,
                            high_freq_factor,
                            original_max_position_embeddings,
                        }),
                        _ => None,
                    },
                };
                let Some(positions) = positions else {
                    failures.push(format!("{file}: unexpected positions {:?}", config.rope));
                    continue;
                };
                let got = Shape {
                    n_positions: config.n_positions,
                    n_head: config.n_head,
                    n_kv_head: config.n_kv_head(),
                    head_dim: config.head_dim(),
                    n_layer: config.n_layer,
                    n_embd: config.n_embd,
                    vocab_size: config.vocab_size,
                    tie_word_embeddings: config.tie_word_embeddings,
                    eos_token_ids: &config.eos_token_ids,
                    positions,
                };
                if got != *want {
                    failures.push(format!("{file}:\n  got  {got:?}\n  want {want:?}"));
                }
            }
            (Expect::Parses(_), Err(e)) => failures.push(format!("{file}: refused: {e}")),
            (Expect::Refused(reasons), Ok(config)) => failures.push(format!(
                "{file}: parsed ({}), expected a refusal naming {reasons:?}",
                config.model_type()
            )),
            (Expect::Refused(reasons), Err(e)) => {
                let text = e.to_string();
                let lists: &[&str] = if reasons.iter().any(|r| r.starts_with("model_type")) {
                    &LISTS_SUPPORTED[..]
                } else {
                    &[]
                };
                let missing: Vec<&str> = reasons
                    .iter()
                    .chain(lists)
                    .copied()
                    .filter(|r| !text.contains(r))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!("{file}: the error lacks {missing:?}: {text}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} published configs are off:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Every preset `bench --synthetic` offers has the shapes of its checkpoint: its parameter
/// count is the one the published weights have (embeddings counted once where tied).
#[test]
fn presets_have_the_published_parameter_counts() {
    let published: &[(&str, u64)] = &[
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
        ("openai-gpt", 116_534_784),
        ("opt-125m", 125_239_296),
        ("opt-350m", 331_196_416),
        ("pythia-160m", 162_322_944),
        ("smollm2-135m", 134_515_008),
        ("llama-1b", 1_235_814_400),
        ("qwen3-0.6b", 596_049_920),
        ("gemma3-1b", 999_885_952),
        ("gemma2-2b", 2_614_341_888),
        ("phi3-mini", 3_821_079_552),
    ];
    let names = wgpt::presets();
    assert_eq!(names, published.iter().map(|p| p.0).collect::<Vec<_>>());
    for &(name, params) in published {
        let cfg = Config::preset(name).unwrap_or_else(|| panic!("no preset {name}"));
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cfg.n_params(), params, "{name}");
    }
    assert!(Config::preset("gemma-7b").is_none());
}
