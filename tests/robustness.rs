//! Robustness: every bad model file, config, tensor, prompt or device state gets a clear error
//! from the library, never a panic. Most cases need no GPU (`Model::check_dir`,
//! `Config::from_json`, `inspect_safetensors`); the rest use `test_gpu()`.

mod common;
mod gguf_writer;

use std::path::Path;
use std::time::{Duration, Instant};

use common::test_gpu;
use common::{copy_fixture, fixture, TempDir};
use serde_json::{json, Value};
use wgpt::{
    inspect_safetensors, Config, Error, KernelFamily, LoadOptions, Model, SamplerConfig,
    StopReason, WeightDtype,
};

/// A small seedable PRNG (SplitMix64) for the mutation tests.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One tensor of a safetensors file: name, dtype, shape, bytes.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_st(bytes: &[u8]) -> Vec<Entry> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(usize, Entry)> = header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(name, v)| {
            let off: Vec<usize> = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            let entry = Entry {
                name,
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: serde_json::from_value(v["shape"].clone()).unwrap(),
                data: data[off[0]..off[1]].to_vec(),
            };
            (off[0], entry)
        })
        .collect();
    out.sort_by_key(|(o, _)| *o);
    out.into_iter().map(|(_, e)| e).collect()
}

fn header_of(entries: &[Entry]) -> serde_json::Map<String, Value> {
    let mut header = serde_json::Map::new();
    let mut at = 0;
    for e in entries {
        header.insert(
            e.name.clone(),
            json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [at, at + e.data.len()]}),
        );
        at += e.data.len();
    }
    header
}

fn join(header: &Value, entries: &[Entry]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for e in entries {
        out.extend_from_slice(&e.data);
    }
    out
}

fn write_st(entries: &[Entry]) -> Vec<u8> {
    join(&Value::Object(header_of(entries)), entries)
}

const ORIG: &str = "tiny-orig-f32";

fn orig_bytes() -> Vec<u8> {
    std::fs::read(fixture(ORIG).join("model.safetensors")).unwrap()
}

fn orig_config() -> Config {
    Config::from_file(&fixture(ORIG).join("config.json")).unwrap()
}

/// A copy of tiny-orig-f32 whose weights are `edit`ed.
fn with_tensors(edit: impl FnOnce(&mut Vec<Entry>)) -> TempDir {
    let dir = copy_fixture(ORIG);
    let mut entries = read_st(&orig_bytes());
    edit(&mut entries);
    std::fs::write(dir.path().join("model.safetensors"), write_st(&entries)).unwrap();
    dir
}

/// A copy of tiny-orig-f32 whose config.json is `edit`ed.
fn with_config(edit: impl FnOnce(&mut Value)) -> TempDir {
    let dir = copy_fixture(ORIG);
    let path = dir.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
    dir
}

/// The error `check_dir` gives, printed as the CLI prints it; also checks it is one line.
fn check_err(dir: &Path) -> (Error, String) {
    let e = Model::check_dir(dir).expect_err("expected an error");
    let msg = common::chain(&e);
    assert!(!msg.contains('\n'), "one line: {msg}");
    eprintln!("{}: {msg}", dir.display());
    (e, msg)
}

fn config_err(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let text = std::fs::read_to_string(fixture(ORIG).join("config.json")).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    let msg = Config::from_json(&Value::Object(v).to_string())
        .expect_err("expected an error")
        .to_string();
    eprintln!("config: {msg}");
    msg
}

fn tiny_config() -> Config {
    common::tiny_config(None)
}

// ---------------------------------------------------------------- files

#[test]
fn the_fixtures_pass_check_dir() {
    for name in [ORIG, "tiny-sharded-f32", "tiny-hf-f16", "tiny-untied-bf16"] {
        Model::check_dir(fixture(name)).unwrap();
    }
    assert_eq!(
        inspect_safetensors(&orig_bytes(), &orig_config()).unwrap(),
        [wgpt::DType::F32]
    );
    // The helpers round-trip the file exactly.
    let again = write_st(&read_st(&orig_bytes()));
    inspect_safetensors(&again, &orig_config()).unwrap();
}

#[test]
fn missing_directory_or_files() {
    let (e, msg) = check_err(Path::new("/nonexistent/model"));
    assert!(matches!(e, Error::InvalidInput(_)), "{msg}");
    assert_eq!(msg, "model directory /nonexistent/model does not exist");
    // A file where the directory should be says so.
    let file = fixture(ORIG).join("config.json");
    let (_, msg) = check_err(&file);
    assert_eq!(
        msg,
        format!(
            "{} is a file, not a model directory (one holding config.json, model.safetensors and tokenizer.json)",
            file.display()
        )
    );
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = copy_fixture(ORIG);
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let (e, msg) = check_err(dir.path());
        assert!(msg.contains(file), "{msg}");
        if file != "model.safetensors" {
            // The OS error is kept as the source, not pasted into the message.
            let Error::Io { source, .. } = &e else {
                panic!("{msg}")
            };
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            let own = e.to_string();
            assert_eq!(
                own,
                format!("cannot read {}", dir.path().join(file).display())
            );
            assert_eq!(
                std::error::Error::source(&e).unwrap().to_string(),
                source.to_string()
            );
        }
    }
}

#[test]
fn truncated_or_empty_safetensors() {
    let bytes = orig_bytes();
    for len in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let dir = copy_fixture(ORIG);
        std::fs::write(dir.path().join("model.safetensors"), &bytes[..len]).unwrap();
        let (e, msg) = check_err(dir.path());
        assert!(matches!(e, Error::Weights { .. }), "{msg}");
        assert!(msg.contains("model.safetensors"), "{msg}");
        if len > 8 {
            assert!(msg.contains("truncated"), "{msg}");
        }
    }
}

#[test]
fn header_length_larger_than_the_file() {
    for n in [1u64 << 60, u64::MAX, orig_bytes().len() as u64] {
        let mut bytes = orig_bytes();
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        let e = inspect_safetensors(&bytes, &orig_config()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("header length field says"), "{msg}");
    }
}

#[test]
fn random_bytes_instead_of_safetensors_or_tokenizer() {
    let mut rng = Rng::new(7);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    let dir = copy_fixture(ORIG);
    std::fs::write(dir.path().join("model.safetensors"), &noise).unwrap();
    let (e, _) = check_err(dir.path());
    assert!(matches!(e, Error::Weights { .. }));

    let dir = copy_fixture(ORIG);
    std::fs::write(dir.path().join("tokenizer.json"), &noise).unwrap();
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::Tokenizer { .. }), "{msg}");
    assert!(msg.contains("tokenizer.json"), "{msg}");
    // The tokenizers crate's error is the source.
    let source = std::error::Error::source(&e).expect("tokenizer error kept");
    assert!(msg.ends_with(&source.to_string()), "{msg}");
    assert!(!e.to_string().contains(&source.to_string()), "{e}");
    // Valid JSON that is not a tokenizer.
    std::fs::write(dir.path().join("tokenizer.json"), "{\"hello\": 1}").unwrap();
    let (e, _) = check_err(dir.path());
    assert!(matches!(e, Error::Tokenizer { .. }));
}

#[test]
fn config_not_json_or_lacking_fields() {
    let dir = copy_fixture(ORIG);
    std::fs::write(dir.path().join("config.json"), "{\"n_embd\": 96,").unwrap();
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{msg}");
    assert!(
        msg.contains("config.json") && msg.contains("not valid JSON"),
        "{msg}"
    );
    for field in ["n_embd", "n_layer", "n_head", "n_positions", "vocab_size"] {
        let dir = with_config(|v| {
            v.as_object_mut().unwrap().remove(field);
        });
        let (_, msg) = check_err(dir.path());
        assert!(msg.contains(&format!("missing field `{field}`")), "{msg}");
    }
    // A field of the wrong type.
    let msg = config_err(|v| {
        v.insert("n_embd".into(), json!("96"));
    });
    assert!(
        msg.ends_with("`n_embd` = \"96\" is not a whole number"),
        "{msg}"
    );
    let msg = config_err(|v| {
        v.insert("eos_token_id".into(), json!(-1));
    });
    assert!(msg.contains("eos_token_id"), "{msg}");
}

#[test]
fn sharded_index_pointing_at_a_missing_shard() {
    let dir = copy_fixture("tiny-sharded-f32");
    std::fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::Weights { .. }));
    assert!(
        msg.contains("shard `model-00002-of-00003.safetensors` is missing"),
        "{msg}"
    );
    // An index that is not JSON, and one that escapes the directory.
    let dir = copy_fixture("tiny-sharded-f32");
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, "not json").unwrap();
    check_err(dir.path());
    std::fs::write(
        &index,
        r#"{"weight_map": {"wte.weight": "../x.safetensors"}}"#,
    )
    .unwrap();
    let (_, msg) = check_err(dir.path());
    assert!(msg.contains("not a plain file name"), "{msg}");
}

// ---------------------------------------------------------------- config values

#[test]
fn absurd_or_inconsistent_config_values() {
    let cases: [(&str, Value, &str); 6] = [
        ("n_embd", json!(0), "`n_embd` = 0 is out of range"),
        (
            "n_layer",
            json!(1_000_000),
            "`n_layer` = 1000000 is out of range",
        ),
        (
            "vocab_size",
            json!(1u64 << 40),
            "`vocab_size` = 1099511627776 is out of range",
        ),
        ("n_head", json!(5), "n_head = 5 does not divide n_embd = 96"),
        (
            "n_positions",
            json!(-3),
            "`n_positions` = -3 is not a whole number",
        ),
        ("layer_norm_epsilon", json!(0.0), "layer_norm_epsilon"),
    ];
    for (field, value, want) in cases {
        let t0 = Instant::now();
        let msg = config_err(|v| {
            v.insert(field.into(), value);
        });
        assert!(msg.contains(want), "{field}: {msg}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn unsupported_activation_or_architecture_says_what_is() {
    let msg = config_err(|v| {
        v.insert("activation_function".into(), json!("swiglu"));
    });
    assert!(
        msg.contains("swiglu") && msg.contains("supported: gelu_new"),
        "{msg}"
    );
    let msg = config_err(|v| {
        v.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    });
    assert!(msg.contains("LlamaForCausalLM") && msg.contains("supported: GPT2LMHeadModel"));
    let msg = config_err(|v| {
        v.insert("model_type".into(), json!("bloom"));
    });
    assert!(
        msg.contains("bloom") && msg.contains("supported: gpt2"),
        "{msg}"
    );
    // A supported model_type whose keys are missing names the first missing key.
    let msg = config_err(|v| {
        v.insert("model_type".into(), json!("llama"));
    });
    assert!(msg.contains("missing field `hidden_size`"), "{msg}");
    let msg = config_err(|v| {
        v.insert("n_head".into(), json!(32));
    });
    assert!(msg.contains("head_dim = 3"), "{msg}");
}

/// The config of fixture `name` with `edit` applied, parsed: the error's message.
fn family_config_err(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    Config::from_json(&text).expect("the fixture's own config parses");
    edit(&mut v);
    let e = Config::from_json(&Value::Object(v).to_string()).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported(_) | Error::Config { .. }),
        "{e}"
    );
    e.to_string()
}

#[test]
fn options_a_family_does_not_implement_are_refused_by_key() {
    // NeoX: a rope scaling kind, in transformers 5's `rope_parameters` and in the legacy key.
    let msg = family_config_err("tiny-neox-seq-bf16", |v| {
        v["rope_parameters"]["rope_type"] = json!("linear");
    });
    assert!(
        msg.contains("rope_parameters.rope_type")
            && msg.contains("linear")
            && msg.contains("default"),
        "{msg}"
    );
    let msg = family_config_err("tiny-neox-par-f32", |v| {
        v.insert(
            "rope_scaling".into(),
            json!({"type": "dynamic", "factor": 2.0}),
        );
    });
    assert!(
        msg.contains("rope_scaling") && msg.contains("dynamic"),
        "{msg}"
    );
    let msg = family_config_err("tiny-neox-par-f32", |v| {
        v.insert("attention_bias".into(), json!(false));
    });
    assert!(msg.contains("attention_bias"), "{msg}");
    // An odd number of rotary dimensions (head_dim 32 · 0.3 = 9).
    let msg = family_config_err("tiny-neox-par-f32", |v| {
        v["rope_parameters"]["partial_rotary_factor"] = json!(0.3);
    });
    assert!(msg.contains("9 rotary dimensions"), "{msg}");
    // OPT without biases or without LayerNorm weights.
    for key in ["enable_bias", "layer_norm_elementwise_affine"] {
        let msg = family_config_err("tiny-opt-f16", |v| {
            v.insert(key.into(), json!(false));
        });
        assert!(msg.contains(key) && msg.contains("true"), "{msg}");
    }
    // GPT-1 with an activation HF's OpenAIGPT has and wgpt does not.
    let msg = family_config_err("tiny-gpt1-f32", |v| {
        v.insert("afn".into(), json!("swish"));
    });
    assert!(msg.contains("afn") && msg.contains("swish"), "{msg}");
    // A model_type of none of the families lists them all.
    let msg = family_config_err("tiny-opt-f16", |v| {
        v.insert("model_type".into(), json!("bloom"));
    });
    for family in ["gpt2", "openai-gpt", "opt", "gpt_neox"] {
        assert!(msg.contains(family), "{msg}");
    }
}

#[test]
fn stop_ids_and_sliding_windows_of_the_llama_family() {
    // eos_token_id [0, 1] in config.json, [0, 1, 2] in generation_config.json: any stops.
    let c = Model::check_dir(fixture("tiny-llama-gqa-f16")).unwrap();
    assert_eq!(c.eos_token_ids, [0, 1, 2]);
    assert_eq!((c.n_head, c.n_kv_head(), c.head_dim()), (6, 2, 16));
    // Qwen2's window of 32 is off without use_sliding_window: the full context of 48.
    assert_eq!(
        Model::check_dir(fixture("tiny-qwen2-bf16"))
            .unwrap()
            .n_positions,
        48
    );
    let text = std::fs::read_to_string(fixture("tiny-qwen2-bf16").join("config.json")).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    v.insert("use_sliding_window".into(), json!(true));
    // With use_sliding_window, the layers from max_window_layers (1) on attend to the window
    // of 32; the context stays 48 (transformers 5 wrote `layer_types` from the saved config,
    // all full, which wins as in HF: drop it to get the max_window_layers rule).
    v.remove("layer_types");
    let c = Config::from_json(&Value::Object(v).to_string()).unwrap();
    assert_eq!(
        (c.n_positions, c.windows.clone()),
        (48, vec![None, Some(32)])
    );
    // Mistral's window below the context is a real window on every layer; a window as long as
    // the context changes nothing.
    let text = std::fs::read_to_string(fixture("tiny-mistral-f32").join("config.json")).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    v.insert("sliding_window".into(), json!(40));
    let c = Config::from_json(&Value::Object(v.clone()).to_string()).unwrap();
    assert_eq!(c.n_positions, 48);
    assert_eq!(c.windows, vec![Some(40); c.n_layer]);
    v.insert("sliding_window".into(), json!(4096));
    let c = Config::from_json(&Value::Object(v).to_string()).unwrap();
    assert_eq!((c.n_positions, c.windows.is_empty()), (48, true));
}

#[test]
fn legacy_and_transformers_5_config_keys_agree() {
    // Pythia's own configs write `rotary_pct` and `rotary_emb_base`; transformers 5 writes
    // `rope_parameters`. Both give the same model.
    let text = std::fs::read_to_string(fixture("tiny-neox-seq-bf16").join("config.json")).unwrap();
    let new = Config::from_json(&text).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    v.remove("rope_parameters");
    v.insert("rotary_pct".into(), json!(0.5));
    v.insert("rotary_emb_base".into(), json!(500));
    let legacy = Config::from_json(&Value::Object(v).to_string()).unwrap();
    assert_eq!(new, legacy);
    let rope = new.rope.as_ref().unwrap();
    assert_eq!((rope.dims, rope.theta), (8, 500.0));
    assert_eq!(rope.scaling, wgpt::RopeScaling::None);
}

#[test]
fn config_values_disagreeing_with_the_tensors() {
    let cases: [(&str, Value, &str); 4] = [
        (
            "n_embd",
            json!(48),
            "has shape [389, 96], expected [389, 48]",
        ),
        ("n_layer", json!(3), "tensor `h.2.ln_1.weight` is missing"),
        (
            "vocab_size",
            json!(400),
            "`wte.weight` has shape [389, 96], expected [400, 96]",
        ),
        (
            "n_inner",
            json!(384),
            "`h.0.mlp.c_fc.weight` has shape [96, 260], expected [96, 384]",
        ),
    ];
    for (field, value, want) in cases {
        let dir = with_config(|v| v[field] = value);
        let (_, msg) = check_err(dir.path());
        assert!(msg.contains(want), "{field}: {msg}");
    }
}

#[test]
fn hand_built_configs_are_validated_too() {
    let mut c = tiny_config();
    c.n_embd = 0;
    assert!(c.validate().unwrap_err().to_string().contains("n_embd"));
    let mut c = tiny_config();
    c.n_layer = 1_000_000;
    assert!(c.validate().is_err());
    // Counting parameters never overflows, whatever the config.
    c.n_embd = usize::MAX;
    c.vocab_size = usize::MAX;
    assert_eq!(c.n_params(), u64::MAX);
    assert!(inspect_safetensors(&orig_bytes(), &c).is_err());
}

// ---------------------------------------------------------------- tensors

#[test]
fn missing_tensor() {
    let dir = with_tensors(|t| t.retain(|e| e.name != "h.1.mlp.c_proj.weight"));
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::MissingTensor { .. }));
    assert_eq!(
        msg,
        "tensor `h.1.mlp.c_proj.weight` is missing from the weights"
    );
    // An untied config requires lm_head.weight, which this file lacks.
    let dir = with_config(|v| v["tie_word_embeddings"] = json!(false));
    let (_, msg) = check_err(dir.path());
    assert!(msg.contains("`lm_head.weight` is missing"), "{msg}");
}

#[test]
fn wrong_dtype() {
    let dir = with_tensors(|t| {
        let e = t
            .iter_mut()
            .find(|e| e.name == "h.0.attn.c_attn.weight")
            .unwrap();
        e.dtype = "I32".into();
    });
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::DType { .. }));
    assert_eq!(
        msg,
        "tensor `h.0.attn.c_attn.weight` has dtype I32; supported: F32, F16, BF16"
    );
}

#[test]
fn wrong_or_transposed_shape() {
    let dir = with_tensors(|t| {
        let e = t
            .iter_mut()
            .find(|e| e.name == "h.0.attn.c_attn.weight")
            .unwrap();
        e.shape = vec![288, 96];
    });
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(
        msg,
        "tensor `h.0.attn.c_attn.weight` has shape [288, 96], expected [96, 288] from config.json (stored transposed?)"
    );
    let dir = with_tensors(|t| {
        let e = t.iter_mut().find(|e| e.name == "ln_f.bias").unwrap();
        e.shape = vec![2, 48];
    });
    let (_, msg) = check_err(dir.path());
    assert!(msg.ends_with("expected [96] from config.json"), "{msg}");
}

#[test]
fn a_tensor_stored_twice_or_with_inconsistent_bytes() {
    let dir = with_tensors(|t| {
        let mut dup = t.iter().find(|e| e.name == "ln_f.bias").unwrap().clone();
        dup.name = "transformer.ln_f.bias".into();
        t.push(dup);
    });
    let (_, msg) = check_err(dir.path());
    assert!(msg.contains("stored twice"), "{msg}");
    // Shape and byte count disagree.
    let mut entries = read_st(&orig_bytes());
    let mut header = header_of(&entries);
    header["ln_f.bias"]["shape"] = json!([97]);
    let e = inspect_safetensors(&join(&Value::Object(header), &entries), &orig_config());
    assert!(e.unwrap_err().to_string().contains("needs 388"));
    // Data past the last tensor.
    entries.last_mut().unwrap().data.clear();
    let mut bytes = write_st(&entries);
    bytes.extend_from_slice(&[0; 16]);
    assert!(inspect_safetensors(&bytes, &orig_config()).is_err());
}

#[test]
fn tokenizer_larger_than_the_vocabulary() {
    let dir = with_tensors(|t| {
        let wte = t.iter_mut().find(|e| e.name == "wte.weight").unwrap();
        wte.shape = vec![300, 96];
        wte.data.truncate(300 * 96 * 4);
    });
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"vocab_size\": 389", "\"vocab_size\": 300"),
    )
    .unwrap();
    let (e, msg) = check_err(dir.path());
    assert!(matches!(e, Error::InvalidInput(_)));
    let tokens = wgpt::Tokenizer::from_file(&dir.path().join("tokenizer.json"))
        .unwrap()
        .vocab_size();
    assert_eq!(
        msg,
        format!("the tokenizer has {tokens} tokens but the model's vocab_size is 300: some token ids cannot be embedded")
    );
}

// ---------------------------------------------------------------- mutated files

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// A few hundred seeded mutations of a real file: never a panic; the ones that must fail do.
#[test]
fn mutated_safetensors_never_panic() {
    let cfg = orig_config();
    let bytes = orig_bytes();
    let entries = read_st(&bytes);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let rng = &mut Rng::new(2024);
    let mut errors = 0;
    let mut run = |b: &[u8], must_fail: bool| {
        let r = inspect_safetensors(b, &cfg);
        if let Err(e) = &r {
            assert!(!e.to_string().contains('\n'), "{e}");
            errors += 1;
        }
        assert!(
            !(must_fail && r.is_ok()),
            "a mutation that must fail passed"
        );
    };
    // Bit flips, in the header or anywhere.
    for i in 0..200 {
        let mut b = bytes.clone();
        let span = if i % 2 == 0 { 8 + header_len } else { b.len() };
        for _ in 0..1 + below(rng, 4) {
            let at = below(rng, span);
            b[at] ^= 1 << below(rng, 8);
        }
        run(&b, false);
    }
    // Truncations and appended bytes.
    for _ in 0..60 {
        run(&bytes[..below(rng, bytes.len())], true);
        let mut b = bytes.clone();
        b.extend((0..1 + below(rng, 64)).map(|_| 0xAB));
        run(&b, true);
    }
    // Header length field changes.
    for _ in 0..60 {
        let mut b = bytes.clone();
        let delta = 1 + below(rng, 100) as u64;
        let n = match below(rng, 3) {
            0 => rng.next_u64() >> below(rng, 64),
            1 => header_len as u64 + delta,
            _ => header_len as u64 - delta,
        };
        b[..8].copy_from_slice(&n.to_le_bytes());
        run(&b, n != header_len as u64);
    }
    // Header JSON edits on one tensor, sometimes with another tensor removed.
    let edits: [fn(&mut Value, usize); 10] = [
        |v, _| v["dtype"] = json!("I32"),
        |v, _| v["dtype"] = json!("XYZ"),
        |v, _| v["dtype"] = json!(17),
        |v, _| v["shape"] = json!([]),
        |v, r| v["shape"] = json!([1usize << (r % 64), 1usize << 62]),
        |v, r| v["shape"][0] = json!(r),
        |v, r| v["data_offsets"][1] = json!(r),
        |v, r| v["data_offsets"] = json!([r, 0]),
        |v, _| v["data_offsets"] = json!([0, usize::MAX]),
        |v, _| *v = json!("not an object"),
    ];
    for _ in 0..200 {
        let mut header = header_of(&entries);
        let victim = &entries[below(rng, entries.len())].name;
        let edit = edits[below(rng, edits.len())];
        edit(&mut header[victim], below(rng, 1 << 20));
        if below(rng, 4) == 0 {
            header.remove(&entries[below(rng, entries.len())].name);
        }
        run(&join(&Value::Object(header), &entries), false);
    }
    // Random bytes, with and without a plausible length field.
    for i in 0..50 {
        let mut b: Vec<u8> = (0..below(rng, 2048))
            .map(|_| rng.next_u64() as u8)
            .collect();
        if i % 2 == 0 && b.len() >= 8 {
            let n = (b.len() - 8) as u64;
            b[..8].copy_from_slice(&n.to_le_bytes());
        }
        run(&b, true);
    }
    assert!(errors > 500, "only {errors} mutations were rejected");
}

/// The same for GGUF files: a converted Llama fixture (permuted q/k rows, `rope_freqs`,
/// tokenizer metadata) mutated in its bytes and in its structure. Every input gives `Ok` or a
/// one-line error; the mutations that must fail do.
#[test]
fn mutated_gguf_never_panic() {
    use gguf_writer::{fixture_writer, Val};
    let base = fixture_writer(&fixture("tiny-llama-gqa-f16"));
    let bytes = base.bytes();
    let end_of_data = bytes.len() - 32; // the writer pads the last tensor to 32 bytes
    wgpt::inspect_gguf(&bytes).unwrap();
    // Where the tensor data starts: everything before it is header.
    let header_len = bytes.len()
        - base
            .tensors
            .iter()
            .map(|t| t.data.len().next_multiple_of(32))
            .sum::<usize>();
    let rng = &mut Rng::new(2025);
    let mut errors = 0;
    let mut run = |b: &[u8], must_fail: bool| {
        let r = wgpt::inspect_gguf(b);
        if let Err(e) = &r {
            assert!(!e.to_string().contains('\n'), "{e}");
            errors += 1;
        }
        assert!(
            !(must_fail && r.is_ok()),
            "a mutation that must fail passed"
        );
    };
    // Bit flips, in the header or anywhere.
    for i in 0..200 {
        let mut b = bytes.clone();
        let span = if i % 2 == 0 { header_len } else { b.len() };
        for _ in 0..1 + below(rng, 4) {
            let at = below(rng, span);
            b[at] ^= 1 << below(rng, 8);
        }
        run(&b, false);
    }
    // Random 8-byte values written over the header (counts, lengths, dims, offsets).
    for _ in 0..200 {
        let mut b = bytes.clone();
        let at = below(rng, header_len - 8);
        let v = rng.next_u64() >> below(rng, 64);
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        run(&b, false);
    }
    // Truncations (anywhere before the end of the last tensor) and appended bytes.
    for _ in 0..60 {
        run(&bytes[..below(rng, end_of_data)], true);
        let mut b = bytes.clone();
        b.extend((0..1 + below(rng, 64)).map(|_| 0xAB));
        run(&b, false);
    }
    // Structural edits: a tensor's shape, type or data, a metadata value's type or content.
    for _ in 0..200 {
        let mut w = base.clone();
        let t = below(rng, w.tensors.len());
        let k = below(rng, w.kv.len());
        let r = rng.next_u64();
        match below(rng, 10) {
            0 => w.tensors[t].ne[0] = r >> below(rng, 64),
            1 => w.tensors[t].ne.push(1 + (r % 3)),
            2 => w.tensors[t].ne = vec![],
            3 => w.tensors[t].ty = (r % 48) as u32,
            4 => {
                let keep = below(rng, w.tensors[t].data.len() + 1);
                w.tensors[t].data.truncate(keep);
            }
            5 => w.kv[k].1 = Val::Str("x".into()),
            6 => w.kv[k].1 = Val::U32(r as u32),
            7 => w.kv[k].1 = Val::Arr(4, vec![Val::U32(r as u32); below(rng, 4)]),
            8 => {
                w.kv.remove(k);
            }
            _ => {
                let dup = w.kv[k].clone();
                w.kv.push(dup);
            }
        }
        run(&w.bytes(), false);
    }
    // Random bytes after a valid magic and version.
    for _ in 0..50 {
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.extend((0..below(rng, 2048)).map(|_| rng.next_u64() as u8));
        run(&b, true);
    }
    assert!(errors > 400, "only {errors} mutations were rejected");
}

// ---------------------------------------------------------------- GPU: fits, NaN, prompts, lost device

#[test]
fn absurd_configs_fail_fast_without_allocating() {
    let Some(gpu) = test_gpu() else { return };
    let opts = LoadOptions::default();
    let big = |n_embd, n_layer, n_head, n_inner, n_positions, vocab_size| {
        let mut c = tiny_config();
        (c.n_embd, c.n_layer, c.n_head) = (n_embd, n_layer, n_head);
        (c.n_inner, c.n_positions, c.vocab_size) = (n_inner, n_positions, vocab_size);
        c
    };
    let cases = [
        // Out of range: caught by validation even for a hand-built config.
        (big(32, 1_000_000, 2, 128, 16, 50), "n_layer"),
        (big(0, 2, 2, 128, 16, 50), "n_embd"),
        // Every field in range, but one weight is 64 GiB.
        (big(65536, 1024, 256, 262144, 65536, 1 << 22), "needs"),
        // Every buffer fits under 128 MiB; the total does not fit anywhere.
        (big(1024, 1024, 16, 4096, 32768, 50257), "the model needs"),
    ];
    for (cfg, want) in cases {
        let t0 = Instant::now();
        let e = Model::synthetic(cfg, 1, &gpu, &opts)
            .err()
            .expect("must fail");
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(msg.contains(want), "{msg}");
    }
    // A memory cap set by the caller.
    let opts = LoadOptions::default().with_max_memory_bytes(1 << 20);
    let e = Model::synthetic(big(256, 4, 4, 1024, 64, 1000), 1, &gpu, &opts).err();
    let msg = e.expect("must fail").to_string();
    assert!(msg.contains("LoadOptions::max_memory_bytes"), "{msg}");
}

#[test]
fn a_weight_above_the_texture_limit_is_refused_with_sizes() {
    let Some(gpu) = test_gpu() else { return };
    // Weights live in textures with one row per four f32 columns: an n_inner just above four
    // times max_texture_dimension_2d makes c_fc too tall (lavapipe: 16384 → 65544).
    let max_dim = gpu.limits().max_texture_dimension_2d as usize;
    let n_inner = 4 * max_dim + 8;
    if n_inner > 4 * 65536 {
        eprintln!("skipping: textures of {max_dim} texels hold any n_inner the config accepts");
        return;
    }
    let mut cfg = tiny_config();
    (cfg.n_embd, cfg.n_layer, cfg.n_head) = (256, 1, 4);
    (cfg.n_inner, cfg.n_positions, cfg.vocab_size) = (n_inner, 64, 100);
    let t0 = Instant::now();
    let opts = LoadOptions::default()
        .with_dtype(WeightDtype::F32)
        .with_max_batch(8);
    let e = Model::synthetic(cfg, 1, &gpu, &opts).err();
    let e = e.expect("must fail");
    assert!(e.is_device_error());
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    let want = format!(
        "device limits exceeded: weight `h.0.mlp.c_fc.weight` (f32) needs a 256×{} texture, above the adapter's max_texture_dimension_2d of {max_dim}",
        n_inner / 4
    );
    assert_eq!(msg, want);
}

fn poison(value: f32) -> TempDir {
    with_tensors(|t| {
        let e = t
            .iter_mut()
            .find(|e| e.name == "h.1.mlp.c_fc.weight")
            .unwrap();
        e.data[40..44].copy_from_slice(&value.to_le_bytes());
    })
}

#[test]
fn nan_or_inf_weights_give_a_clear_error_and_the_library_keeps_working() {
    let Some(gpu) = test_gpu() else { return };
    for bad in [f32::NAN, f32::INFINITY] {
        let dir = poison(bad);
        let model = Model::load(dir.path(), &gpu, &LoadOptions::default()).unwrap();
        let mut s = model.session().unwrap();
        let e = s.forward(&[1, 2, 3]).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("non-finite logits") && msg.contains("NaN/Inf"),
            "{msg}"
        );
        // Greedy steps see it too, with either kernel family (the cooperative one takes the
        // argmax on the GPU).
        for family in KernelFamily::ALL {
            let opts = LoadOptions::default().with_kernels(family);
            let m = Model::load(dir.path(), &gpu, &opts).unwrap();
            let mut g = m.session().unwrap();
            let e = g.forward_argmax(&[1, 2, 3]).unwrap_err();
            assert!(matches!(e, Error::NonFinite { .. }), "{e}");
            g.reset();
            let e = g.decode_argmax(4, true).unwrap_err();
            assert!(matches!(e, Error::NonFinite { .. }), "{e}");
        }
        // Generation reports the same error instead of sampling garbage, greedy or not.
        for sampler in [SamplerConfig::default(), SamplerConfig::greedy()] {
            let mut g = s.generate("To be", sampler, 5).unwrap();
            assert!(matches!(g.next(), Some(Err(Error::NonFinite { .. }))));
            assert_eq!(g.stop_reason(), Some(StopReason::Error));
            assert!(g.next().is_none());
        }
        // The session still answers (with the same error), and a good model on the same GPU works.
        s.reset();
        assert!(s.forward(&[4]).is_err());
    }
    let good = Model::load(fixture(ORIG), &gpu, &LoadOptions::default()).unwrap();
    let mut s = good.session().unwrap();
    assert_eq!(s.forward(&[1, 2, 3]).unwrap().len(), 389);
}

#[test]
fn a_weight_beyond_f16_range_is_refused_for_f16_storage() {
    // f16 holds weights up to ±65504; a larger finite one would become infinite on the GPU.
    let Some(gpu) = test_gpu() else { return };
    let dir = poison(1.0e6);
    let f16 = LoadOptions::default().with_dtype(WeightDtype::F16);
    let msg = Model::load(dir.path(), &gpu, &f16)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        msg.contains("h.1.mlp.c_fc.weight")
            && msg.contains("1000000")
            && msg.contains("f16's range"),
        "{msg}"
    );
    // f32 storage keeps it.
    let model = Model::load(dir.path(), &gpu, &LoadOptions::default()).unwrap();
    assert_eq!(
        model.session().unwrap().forward(&[1, 2]).unwrap().len(),
        389
    );
}

fn err(r: wgpt::Result<wgpt::Generation<'_, '_>>) -> String {
    match r {
        Ok(_) => panic!("must fail"),
        Err(e) => e.to_string(),
    }
}

fn ppl(s: &mut wgpt::Session<'_>, ids: &[u32], windows: Option<usize>) -> String {
    let r = wgpt::perplexity(s, ids, 32, windows, |_| 1);
    r.expect_err("must fail").to_string()
}

#[test]
fn prompts_and_perplexity_inputs() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::load(fixture("tiny-sharded-f32"), &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    assert_eq!(
        err(s.generate("", SamplerConfig::default(), 4)),
        "the prompt is empty"
    );
    let long = vec![5u32; 40];
    assert_eq!(
        err(s.generate_ids(&long, SamplerConfig::default(), 4)),
        "the prompt has 40 tokens but the context holds 32 (LoadOptions::ctx, --ctx); shorten it"
    );
    let bad_sampler = SamplerConfig::default().with_top_p(1.5);
    assert!(s.generate_ids(&[1], bad_sampler, 4).is_err());
    // Perplexity needs two tokens, a window of at least 1, and ids inside the vocabulary.
    assert_eq!(
        ppl(&mut s, &[], None),
        "nothing to score: the text has 0 token(s); perplexity needs at least 2"
    );
    assert!(ppl(&mut s, &[7], None).contains("has 1 token(s)"));
    assert!(ppl(&mut s, &[7, 8, 9], Some(0)).contains("at least 1"));
    // The last token of a window is never fed to the model: it must be checked all the same.
    assert_eq!(
        ppl(&mut s, &[7, 8, 389], None),
        "token id 389 is outside the vocabulary of 389"
    );
    assert!(wgpt::perplexity(&mut s, &[7, 8, 9], 1, None, |_| 1).is_err());
    assert!(wgpt::perplexity(&mut s, &[7, 8, 9], 33, None, |_| 1).is_err());
    // All of that left the session usable.
    assert!(wgpt::perplexity(&mut s, &[7, 8, 9], 32, None, |_| 1).is_ok());
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::load(fixture(ORIG), &gpu, &LoadOptions::default()).unwrap();
    let mut s = model.session().unwrap();
    s.forward(&[1, 2]).unwrap();
    gpu.device().destroy();
    let e = s.forward(&[3]).unwrap_err();
    eprintln!("{}", common::chain(&e));
    assert!(e.is_device_error(), "{e}");
    assert!(
        e.to_string()
            .starts_with("GPU error: device lost (Destroyed)"),
        "{e}"
    );
    assert!(s.forward(&[3]).unwrap_err().is_device_error());
    let mut g = s.generate("To be", SamplerConfig::default(), 3).unwrap();
    assert!(matches!(g.next(), Some(Err(e)) if e.is_device_error()));
    let e = Model::load(fixture(ORIG), &gpu, &LoadOptions::default()).err();
    assert!(e.expect("load on a lost device").is_device_error());
}

/// `Model::session` on a lost device (wgpu's `create_buffer_init` panics there, so the
/// library must not use it).
#[test]
fn a_new_session_on_a_lost_device_is_an_error() {
    let Some(gpu) = test_gpu() else { return };
    let model = Model::load(fixture(ORIG), &gpu, &LoadOptions::default()).unwrap();
    gpu.device().destroy();
    assert!(model.session().err().expect("must fail").is_device_error());
}

/// The matmul kernels read rows as vec4: an n_inner that is not a multiple of 4 is refused
/// with a message, not computed wrongly.
#[test]
fn n_inner_not_a_multiple_of_4_is_unsupported() {
    let json = r#"{"model_type":"gpt2","n_embd":32,"n_layer":1,"n_head":2,"n_positions":8,"n_inner":66,"vocab_size":10}"#;
    let e = wgpt::Config::from_json(json).unwrap_err().to_string();
    assert!(
        e.contains("n_inner = 66") && e.contains("multiple of 4"),
        "{e}"
    );
}
