//! GGUF files: the `tiny-*` fixtures converted as llama.cpp's converter converts them
//! (`tests/gguf_writer`) must give Hugging Face's logits (same tolerances as
//! `tests/golden.rs`, both kernel families) and greedy ids; the tokenizer rebuilt from GGUF
//! metadata must give the ids of the model's `tokenizer.json`; malformed metadata gets
//! errors. The mutated-file test is in `tests/robustness.rs`.

mod common;
mod gguf_writer;

use std::path::{Path, PathBuf};

use common::test_gpu;
use common::{fixture, reference, tempdir, TempDir};
use gguf_writer::{convert_fixture, strs, tokenizer_kv, Val, Writer};
use wgpt::{Gpu, KernelFamily, KvDtype, LoadOptions, Model, ModelFiles};

const LOGIT_TOL: f64 = 1e-3;

/// One fixture per GGUF architecture: GPT-2 (`Conv1D` weights stored transposed), Llama
/// (q/k rows permuted, llama3 rope scaling as `rope_freqs`, grouped-query attention, untied
/// head, f16), Qwen2 (q/k/v biases, tied, bf16), GPT-NeoX (qkv regrouped, parallel residual).
const CONVERTED: [&str; 4] = [
    "tiny-orig-f32",
    "tiny-llama-gqa-f16",
    "tiny-qwen2-bf16",
    "tiny-neox-par-f32",
];

/// Writes fixture `name` as a `.gguf` file alone in a temporary directory (so that the
/// metadata's tokenizer is used).
fn converted(name: &str) -> (TempDir, PathBuf) {
    let dir = tempdir();
    let path = dir.path().join(format!("{name}.gguf"));
    std::fs::write(&path, convert_fixture(&fixture(name))).unwrap();
    (dir, path)
}

fn load_both_families(gpu: &Gpu, path: &Path, name: &str, r: &common::Reference) {
    for family in KernelFamily::ALL {
        let mut opts = LoadOptions::default()
            .with_kv(KvDtype::F32)
            .with_kernels(family)
            .with_max_batch(4);
        // Phi-3's references are HF's on short sequences: longrope's short factors, which
        // wgpt uses at a context up to the original one (32 here).
        if name.starts_with("tiny-phi3") {
            opts = opts.with_ctx(32);
        }
        let model = Model::load(path, gpu, &opts).unwrap();
        let what = format!("{name} ({family:?})");
        let worst = common::check_logits(&model, r, LOGIT_TOL, &what);
        common::check_greedy(&model, r, 1e-3, &what);
        eprintln!("{what}: max relative logit error {worst:.3e}");
    }
}

#[test]
fn converted_fixtures_match_hf() {
    let Some(gpu) = test_gpu() else { return };
    for name in CONVERTED {
        let (_dir, path) = converted(name);
        load_both_families(&gpu, &path, name, &reference(name));
    }
}

/// The GGUF fixtures of `tools/make_gguf_fixtures.py` (llama.cpp's own converter and
/// quantizer): every `tests/fixtures/gguf/<name>.gguf`, with `<name>.reference.json`.
fn gguf_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture("gguf"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let stem = p.file_stem()?.to_str()?.to_string();
            (p.extension()? == "gguf").then_some(stem)
        })
        .collect();
    names.sort();
    // The files users have: llama.cpp's F16 and Q8_0 conversions and llama-quantize's Q4_0
    // and Q4_K_M (with their Q6_K / Q8_0 / Q5_0 tensors), of a Llama and a GPT-2.
    for want in [
        "tiny-llama-f16",
        "tiny-llama-q8_0",
        "tiny-llama-q4_0",
        "tiny-llama-q4_k_m",
        "tiny-gpt2-q8_0",
        "tiny-gpt2-q4_0",
        "tiny-gpt2-q4_k_m",
        "tiny-llama32-f16",
        "tiny-sp-llama-f32",
        "tiny-neox-f16",
        "tiny-qwen2-q8_0",
        "tiny-qwen3-f16",
        "tiny-phi3-f32",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "GGUF fixture {want} missing: {names:?}"
        );
    }
    names
}

/// `tests/fixtures/gguf/<name>.reference.json` (the format of the golden fixtures').
fn gguf_reference(name: &str) -> common::Reference {
    let path = fixture("gguf").join(format!("{name}.reference.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let floats = |x: &serde_json::Value| -> Vec<f64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_f64().unwrap())
            .collect()
    };
    let u = |k: &str| v[k].as_u64().unwrap() as usize;
    let f = |k: &str| v[k].as_f64().unwrap();
    common::Reference {
        prompt_ids: ids("prompt_ids"),
        logits: v["logits"].as_array().unwrap().iter().map(floats).collect(),
        greedy_prompt_ids: ids("greedy_prompt_ids"),
        greedy_ids: ids("greedy_ids"),
        greedy_margins: floats(&v["greedy_margins"]),
        ppl_context: u("ppl_context"),
        ppl_tokens_scored: u("ppl_tokens_scored"),
        ppl_nll_mean: f("ppl_nll_mean"),
        ppl_bits_per_byte: f("ppl_bits_per_byte"),
        ppl_chunks2_nll_mean: f("ppl_chunks2_nll_mean"),
        ppl_chunks2_tokens_scored: u("ppl_chunks2_tokens_scored"),
    }
}

#[test]
fn llama_cpp_files_match_hf() {
    // Files written by convert_hf_to_gguf.py / llama-quantize; the reference is HF's float64
    // forward of the weights each file holds (dequantized by the `gguf` package).
    let Some(gpu) = test_gpu() else { return };
    for name in gguf_fixtures() {
        let path = fixture("gguf").join(format!("{name}.gguf"));
        load_both_families(&gpu, &path, &name, &gguf_reference(&name));
    }
}

#[test]
fn llama_cpp_files_show_their_tensor_types() {
    let Some(gpu) = test_gpu() else { return };
    for name in gguf_fixtures() {
        let path = fixture("gguf").join(format!("{name}.gguf"));
        let model =
            Model::load(&path, &gpu, &LoadOptions::default().with_kv(KvDtype::F32)).unwrap();
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("gguf").join(format!("{name}.reference.json")))
                .unwrap(),
        )
        .unwrap();
        // Every type the file's tensors use (rope_freqs aside, which is not a weight).
        let mut want: Vec<String> = v["tensor_types"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "rope_freqs.weight")
            .map(|(_, t)| t.as_str().unwrap().to_lowercase())
            .collect();
        want.sort();
        want.dedup();
        let mut got: Vec<String> = model
            .info()
            .file_dtypes
            .iter()
            .map(|d| d.to_string())
            .collect();
        got.sort();
        assert_eq!(got, want, "{name}");
        assert!(model.info().origin.ends_with(".gguf"));
    }
}

/// The HF directory a GGUF fixture was converted from (its tokenizer files).
fn hf_dir(gguf_name: &str) -> PathBuf {
    match gguf_name.rsplit_once('-').unwrap().0 {
        "tiny-llama32" => fixture("tiny-llama32-bf16"),
        "tiny-sp-llama" => fixture("tiny-sp-llama-f32"),
        "tiny-gemma3" => fixture("tiny-gemma3-bf16"),
        "tiny-gemma2" => fixture("tiny-gemma2-f32"),
        model => fixture("gguf").join(format!("{model}-hf")),
    }
}

#[test]
fn llama_cpp_tokenizers_match_tokenizer_json() {
    // The vocabulary (byte-level BPE or SentencePiece) and the special tokens a text gets (the
    // file's add_bos_token / add_eos_token against tokenizer.json's post-processor and
    // tokenizer_config.json) both match.
    for name in gguf_fixtures() {
        let ours =
            wgpt::Tokenizer::from_gguf(&fixture("gguf").join(format!("{name}.gguf"))).unwrap();
        let hf = wgpt::Tokenizer::from_dir(&hf_dir(&name)).unwrap();
        for text in tokenizer_texts() {
            let ids = hf.encode(&text).unwrap();
            assert_eq!(ours.encode(&text).unwrap(), ids, "{name}: {text:?}");
            assert_eq!(ours.decode(&ids).unwrap(), hf.decode(&ids).unwrap());
            assert_eq!(
                ours.encode_with_specials(&text).unwrap(),
                hf.encode_with_specials(&text).unwrap(),
                "{name}: {text:?} with special tokens"
            );
        }
        assert_eq!(ours.bos_token_id(), hf.bos_token_id(), "{name}");
    }
}

#[test]
fn converted_fixtures_open_without_a_gpu() {
    for name in CONVERTED {
        let (_dir, path) = converted(name);
        let files = ModelFiles::open(&path).unwrap();
        let want = wgpt::Config::from_file(&fixture(name).join("config.json")).unwrap();
        let got = files.config();
        assert_eq!(
            (
                got.n_embd,
                got.n_layer,
                got.n_head,
                got.n_inner,
                got.vocab_size
            ),
            (
                want.n_embd,
                want.n_layer,
                want.n_head,
                want.n_inner,
                want.vocab_size
            ),
            "{name}"
        );
        assert_eq!(got.n_kv_head(), want.n_kv_head(), "{name}");
        assert_eq!(got.head_dim(), want.head_dim(), "{name}");
        assert_eq!(got.tie_word_embeddings, want.tie_word_embeddings, "{name}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(wgpt::inspect_gguf(&bytes).unwrap().n_embd, want.n_embd);
    }
}

/// Texts for tokenizer comparisons: prose, code, digits, whitespace runs, special tokens.
fn tokenizer_texts() -> Vec<String> {
    let held = std::fs::read_to_string(fixture("heldout_slice.txt")).unwrap();
    vec![
        held,
        "Hello world, it's 2024-11-24: 1234567 tokens!\n\n\tdef f(x):\n        return x**2  # ok"
            .into(),
        "naïve café 日本語 🤖 I'VE we'Re   \n\n\n  spaces".into(),
        "<|endoftext|>ROMEO:<|im_start|>user\nhi<|im_end|>".into(),
        String::new(),
    ]
}

#[test]
fn tokenizer_from_metadata_matches_tokenizer_json() {
    for name in ["tiny-orig-f32", "tiny-qwen2-bf16"] {
        let (_dir, path) = converted(name);
        let ours = wgpt::Tokenizer::from_gguf(&path).unwrap();
        let hf = wgpt::Tokenizer::from_file(&fixture(name).join("tokenizer.json")).unwrap();
        for text in tokenizer_texts() {
            let ids = hf.encode(&text).unwrap();
            assert_eq!(ours.encode(&text).unwrap(), ids, "{name}: {text:?}");
            assert_eq!(ours.decode(&ids).unwrap(), hf.decode(&ids).unwrap());
        }
    }
    // The real GPT-2 vocabulary (50257 tokens, 50000 merges).
    let dir = tempdir();
    let path = dir.path().join("vocab.gguf");
    let json_path = fixture("gpt2-tokenizer/tokenizer.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let mut w = Writer::default();
    tokenizer_kv(&mut w, &json, 50257, "gpt-2");
    std::fs::write(&path, w.bytes()).unwrap();
    let ours = wgpt::Tokenizer::from_gguf(&path).unwrap();
    let hf = wgpt::Tokenizer::from_file(&json_path).unwrap();
    for text in tokenizer_texts() {
        assert_eq!(
            ours.encode(&text).unwrap(),
            hf.encode(&text).unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn llama_cpp_vocab_files_give_hf_ids() {
    // llama.cpp's `models/ggml-vocab-*.gguf` with their `.inp` texts and the ids HF's
    // tokenizer gave (`.out`); run where a llama.cpp checkout is named by LLAMA_CPP_DIR.
    let Ok(dir) = std::env::var("LLAMA_CPP_DIR") else {
        eprintln!("skipping: LLAMA_CPP_DIR is not set");
        return;
    };
    let models = Path::new(&dir).join("models");
    for name in ["gpt-2", "llama-bpe", "qwen2", "starcoder", "refact", "mpt"] {
        let path = models.join(format!("ggml-vocab-{name}.gguf"));
        let t0 = std::time::Instant::now();
        let tok = wgpt::Tokenizer::from_gguf(&path).unwrap();
        let built = t0.elapsed();
        let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).unwrap();
        let out = std::fs::read_to_string(path.with_extension("gguf.out")).unwrap();
        let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        let mut checked = 0;
        for (text, ids) in texts.iter().zip(out.lines()) {
            let want: Vec<u32> = ids.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(tok.encode(text).unwrap(), want, "{name}: {text:?}");
            checked += 1;
        }
        eprintln!("{name}: {checked} texts match (tokenizer built in {built:.2?})");
    }
}

/// A minimal Llama GGUF (2 layers, width 8, vocabulary 6) with metadata `extra` added.
fn tiny_llama(extra: &[(&str, Val)], drop: &[&str]) -> Vec<u8> {
    let mut w = Writer::default();
    let kv = [
        ("general.architecture", Val::Str("llama".into())),
        ("llama.context_length", Val::U32(16)),
        ("llama.embedding_length", Val::U32(8)),
        ("llama.block_count", Val::U32(1)),
        ("llama.feed_forward_length", Val::U32(16)),
        ("llama.attention.head_count", Val::U32(2)),
        ("llama.attention.head_count_kv", Val::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon", Val::F32(1e-5)),
        ("tokenizer.ggml.model", Val::Str("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            strs(&["a", "b", "c", "ab", "abc", "<s>"]),
        ),
        ("tokenizer.ggml.merges", strs(&["a b", "ab c"])),
        (
            "tokenizer.ggml.token_type",
            Val::Arr(5, [1, 1, 1, 1, 1, 3].map(Val::I32).to_vec()),
        ),
        ("tokenizer.ggml.eos_token_id", Val::U32(5)),
    ];
    for (k, v) in kv.into_iter().filter(|(k, _)| !drop.contains(k)) {
        w.kv(k, v);
    }
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    let f32s = |n: usize| vec![0u8; 4 * n];
    w.tensor("token_embd.weight", &[6, 8], 0, f32s(48));
    w.tensor("output_norm.weight", &[8], 0, f32s(8));
    for (n, shape) in [
        ("attn_norm", vec![8]),
        ("attn_q", vec![8, 8]),
        ("attn_k", vec![4, 8]),
        ("attn_v", vec![4, 8]),
        ("attn_output", vec![8, 8]),
        ("ffn_norm", vec![8]),
        ("ffn_gate", vec![16, 8]),
        ("ffn_up", vec![16, 8]),
        ("ffn_down", vec![8, 16]),
    ] {
        let len = shape.iter().product();
        w.tensor(&format!("blk.0.{n}.weight"), &shape, 0, f32s(len));
    }
    w.bytes()
}

/// (metadata added, keys dropped, part of the expected error).
type Case = (
    Vec<(&'static str, Val)>,
    &'static [&'static str],
    &'static str,
);

#[test]
fn a_minimal_file_parses_and_bad_metadata_is_refused() {
    let cfg = wgpt::inspect_gguf(&tiny_llama(&[], &[])).unwrap();
    assert_eq!((cfg.n_embd, cfg.n_kv_head(), cfg.vocab_size), (8, 1, 6));
    assert_eq!(cfg.eos_token_ids, vec![5]);
    // Nested arrays and every value type are read (and ignored where unknown).
    let nested = Val::Arr(9, vec![Val::Arr(4, vec![Val::U32(1)]), Val::Arr(4, vec![])]);
    let extra = [
        ("x.nested", nested),
        ("x.u64", Val::U64(u64::MAX)),
        ("x.bool", Val::Bool(true)),
        ("x.i32", Val::I32(-3)),
    ];
    wgpt::inspect_gguf(&tiny_llama(&extra, &[])).unwrap();
    let cases: [Case; 7] = [
        (vec![], &["llama.block_count"], "llama.block_count"),
        (
            vec![("general.architecture", Val::Str("mamba".into()))],
            &["general.architecture"],
            "GGUF architecture `mamba`",
        ),
        (
            vec![("tokenizer.ggml.model", Val::Str("t5".into()))],
            &["tokenizer.ggml.model"],
            "tokenizer model `t5`",
        ),
        (
            vec![("tokenizer.ggml.model", Val::Str("rwkv".into()))],
            &["tokenizer.ggml.model"],
            "tokenizer model `rwkv`",
        ),
        (
            vec![("tokenizer.ggml.pre", Val::Str("chameleon".into()))],
            &[],
            "pre-tokenizer `chameleon`",
        ),
        (
            vec![("llama.rope.scaling.type", Val::Str("yarn".into()))],
            &[],
            "yarn",
        ),
        (
            vec![("general.alignment", Val::U32(3))],
            &[],
            "power of two",
        ),
    ];
    for (extra, drop, want) in cases {
        let err = wgpt::inspect_gguf(&tiny_llama(&extra, drop))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err} (wanted {want})");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn the_chat_template_in_metadata_is_used() {
    let Some(gpu) = test_gpu() else { return };
    let template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}";
    let extra = [
        ("tokenizer.chat_template", Val::Str(template.into())),
        ("tokenizer.ggml.bos_token_id", Val::U32(3)),
    ];
    let dir = tempdir();
    let path = dir.path().join("chat.gguf");
    std::fs::write(&path, tiny_llama(&extra, &[])).unwrap();
    let model = Model::load(&path, &gpu, &LoadOptions::default().with_kv(KvDtype::F32)).unwrap();
    let t = model.chat_template().expect("a chat template");
    let text = t
        .render(&[wgpt::Message::new("user", "hi")], false)
        .unwrap();
    assert_eq!(text, "ab[user]hi<s>");
    assert_eq!(model.config().eos_token_ids, vec![5]);
}

#[test]
fn versions_and_a_tokenizer_json_beside_the_file() {
    let mut bytes = tiny_llama(&[], &[]);
    // Version 2 has version 3's layout.
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    wgpt::inspect_gguf(&bytes).unwrap();
    for (v, want) in [
        (1u32, "version 1"),
        (3u32.swap_bytes(), "big-endian"),
        (4, "version 4"),
    ] {
        bytes[4..8].copy_from_slice(&v.to_le_bytes());
        let err = wgpt::inspect_gguf(&bytes).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    // A tokenizer.json beside the file is used instead of the metadata's: this one has 384
    // tokens, more than the file's vocabulary of 6, which the check reports.
    let dir = tempdir();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, tiny_llama(&[], &[])).unwrap();
    ModelFiles::open(&path).unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let err = ModelFiles::open(&path).err().unwrap().to_string();
    assert!(err.contains("384 tokens"), "{err}");
    // Not a GGUF file, named .gguf.
    std::fs::write(&path, b"not a gguf file").unwrap();
    let err = ModelFiles::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("not a GGUF file") && err.contains("m.gguf"),
        "{err}"
    );
}
