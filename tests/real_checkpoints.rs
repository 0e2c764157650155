//! Checkpoints as people download them (`tools/make_real_fixtures.py`): a Llama 3.2-style
//! directory (context 131072, a tokenizer whose post-processor adds `<|begin_of_text|>`) and a
//! Llama 2-style one with a SentencePiece tokenizer, each also as llama.cpp's converter writes
//! it to GGUF. The text paths add the BOS as HF does; the context in use is the user's
//! choice, not the model's maximum; SentencePiece GGUF files tokenize from their metadata as
//! HF does; no weight format asked of the library panics. (Logits, greedy ids and perplexity
//! against HF are in `tests/golden.rs` and `tests/gguf.rs`, whose loops include these files.)

mod common;

use std::path::PathBuf;

use common::test_gpu;
use common::{fixture, reference};
use wgpt::{Config, KvDtype, LoadOptions, Model, SamplerConfig, Tokenizer, WeightDtype};

/// (HF directory, GGUF file) of each fixture.
fn checkpoints() -> [(&'static str, PathBuf, PathBuf); 2] {
    [
        (
            "tiny-llama32-bf16",
            fixture("tiny-llama32-bf16"),
            fixture("gguf/tiny-llama32-f16.gguf"),
        ),
        (
            "tiny-sp-llama-f32",
            fixture("tiny-sp-llama-f32"),
            fixture("gguf/tiny-sp-llama-f32.gguf"),
        ),
    ]
}

/// One case of `tests/fixtures/tokenizer_cases/*.json`: a text and HF's ids without and with
/// the special tokens the tokenizer adds.
struct Case {
    text: String,
    ids: Vec<u32>,
    ids_special: Vec<u32>,
    sp_differs: bool,
}

fn cases(file: &str) -> Vec<Case> {
    let path = fixture("tokenizer_cases").join(file);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: ids(&c["hf_ids"]),
            ids_special: ids(&c["hf_ids_special"]),
            sp_differs: c["hf_differs_from_sp"].as_bool().unwrap_or(false),
        })
        .collect()
}

#[test]
fn tokenizers_give_hf_ids_from_the_directory_and_from_gguf_metadata_alone() {
    for ((name, dir, gguf), file) in checkpoints()
        .into_iter()
        .zip(["llama32.json", "sp-llama.json"])
    {
        let cases = cases(file);
        assert!(cases.len() >= 40, "{file}: {} cases", cases.len());
        let from_dir = Tokenizer::from_dir(&dir).unwrap();
        let from_gguf = Tokenizer::from_gguf(&gguf).unwrap();
        for (how, tok) in [("directory", &from_dir), ("GGUF", &from_gguf)] {
            for c in &cases {
                let what = format!("{name} from the {how}: {:?}", c.text);
                assert_eq!(tok.encode(&c.text).unwrap(), c.ids, "{what}");
                assert_eq!(
                    tok.encode_with_specials(&c.text).unwrap(),
                    c.ids_special,
                    "{what} with special tokens"
                );
                // Decoding gives the text back where HF's does (HF drops the `▁` of a leading
                // space, so texts starting with whitespace come back without it).
                if !c.text.starts_with(char::is_whitespace) && !c.text.contains('<') {
                    assert_eq!(tok.decode(&c.ids).unwrap(), c.text, "{what}: decode");
                }
            }
        }
        eprintln!("{name}: {} texts give HF's ids from both", cases.len());
    }
    // Where HF's SentencePiece conversion and SentencePiece itself disagree (a leading space,
    // whitespace-only text, special-token text inside a prompt), wgpt gives HF's ids: the
    // fixture marks those cases, and they are among the ones checked above.
    let sp = cases("sp-llama.json");
    let differ: Vec<&str> = sp
        .iter()
        .filter(|c| c.sp_differs)
        .map(|c| c.text.as_str())
        .collect();
    assert!(differ.contains(&" leading space"), "{differ:?}");
    assert!(differ.contains(&"   "), "{differ:?}");
}

#[test]
fn the_bos_is_added_where_the_tokenizer_adds_one() {
    for (name, dir, gguf) in checkpoints() {
        let r = reference(name);
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let (prompt, bos) = (
            v["prompt_text"].as_str().unwrap(),
            v["bos_token_id"].as_u64().unwrap() as u32,
        );
        for tok in [
            Tokenizer::from_dir(&dir).unwrap(),
            Tokenizer::from_gguf(&gguf).unwrap(),
        ] {
            assert_eq!(tok.bos_token_id(), Some(bos), "{name}");
            let ids = tok.encode_with_specials(prompt).unwrap();
            assert_eq!(
                ids, r.prompt_ids,
                "{name}: the reference's ids start with the BOS"
            );
            assert_eq!(ids[0], bos);
            assert_eq!(tok.encode(prompt).unwrap(), ids[1..], "{name}: raw ids");
        }
    }
    // GPT-2's, Qwen2's and the built-in model's tokenizers add nothing.
    let builtin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/model");
    for dir in [
        fixture("tiny-orig-f32"),
        fixture("tiny-qwen2-bf16"),
        builtin,
    ] {
        let tok = Tokenizer::from_dir(&dir).unwrap();
        assert_eq!(tok.bos_token_id(), None, "{}", dir.display());
        let text = "ROMEO: But soft";
        assert_eq!(
            tok.encode_with_specials(text).unwrap(),
            tok.encode(text).unwrap()
        );
    }
}

#[test]
fn text_generation_starts_with_the_bos_and_matches_hf() {
    let Some(gpu) = test_gpu() else { return };
    for (name, dir, gguf) in checkpoints() {
        let r = reference(name);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let prompt = v["greedy_prompt_text"].as_str().unwrap();
        for path in [&dir, &gguf] {
            let opts = LoadOptions::default().with_kv(KvDtype::F32);
            let model = Model::load(path, &gpu, &opts).unwrap();
            let eos = model.config().eos_token_ids.clone();
            let mut s = model.session().unwrap();
            // From the text, as `generate` and `/v1/completions` do: the BOS goes first.
            let got: Vec<u32> = s
                .generate(prompt, SamplerConfig::greedy(), r.greedy_ids.len())
                .unwrap()
                .map(|t| t.unwrap().id)
                .collect();
            assert_eq!(s.position(), r.greedy_prompt_ids.len() + got.len() - 1);
            let want: Vec<u32> = r
                .greedy_ids
                .iter()
                .copied()
                .take_while(|t| !eos.contains(t))
                .collect();
            assert_eq!(got, want, "{name} from {}", path.display());
        }
    }
}

#[test]
fn the_context_in_use_is_chosen_not_the_models_maximum() {
    let dir = fixture("tiny-llama32-bf16");
    let cfg = Config::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(cfg.n_positions, 131_072);
    assert_eq!(cfg.n_ctx, wgpt::DEFAULT_CONTEXT);
    let gguf = wgpt::ModelFiles::open(fixture("gguf/tiny-llama32-f16.gguf")).unwrap();
    assert_eq!(gguf.config().n_positions, 131_072);
    assert_eq!(gguf.config().n_ctx, 4096);
    // A million positions (Qwen2.5-1M says 1010000) parse too.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    v["max_position_embeddings"] = 1_048_576.into();
    let big = Config::from_json(&v.to_string()).unwrap();
    assert_eq!((big.n_positions, big.n_ctx), (1_048_576, 4096));

    let Some(gpu) = test_gpu() else { return };
    for (ctx, want) in [(None, 4096), (Some(0), 131_072), (Some(100), 100)] {
        let mut opts = LoadOptions::default();
        opts.ctx = ctx;
        let model = Model::load(&dir, &gpu, &opts).unwrap();
        assert_eq!(model.config().n_ctx, want, "{ctx:?}");
        assert_eq!(model.info().n_ctx, want);
        // Keys and values of 2 layers × 2 key/value heads × 16, f16 by default.
        assert_eq!(model.info().kv_cache_bytes, (2 * 2 * want * 32 * 2) as u64);
        assert_eq!(model.info().kv, KvDtype::F16);
    }
    let f32 = Model::load(&dir, &gpu, &LoadOptions::default().with_kv(KvDtype::F32)).unwrap();
    assert_eq!(f32.info().kv_cache_bytes, (2 * 2 * 4096 * 32 * 4) as u64);
    let err = Model::load(&dir, &gpu, &LoadOptions::default().with_ctx(200_000))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--ctx 200000") && err.contains("131072"),
        "{err}"
    );
    // A prompt longer than the context in use is refused, naming the context.
    let model = Model::load(&dir, &gpu, &LoadOptions::default().with_ctx(8)).unwrap();
    let mut s = model.session().unwrap();
    let err = s
        .generate(
            "ROMEO: But soft, what light through yonder window",
            SamplerConfig::greedy(),
            2,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("the context holds 8"), "{err}");
}

#[test]
fn every_weight_format_on_every_source_is_a_model_or_an_error() {
    let Some(gpu) = test_gpu() else { return };
    let gguf = fixture("gguf/tiny-llama-q4_k_m.gguf");
    let synthetic = common::tiny_config(None);
    for dtype in WeightDtype::ALL {
        let opts = LoadOptions::default().with_dtype(dtype);
        let results = [
            (
                "safetensors",
                Model::load(fixture("tiny-llama-gqa-f16"), &gpu, &opts),
            ),
            ("GGUF", Model::load(&gguf, &gpu, &opts)),
            (
                "synthetic",
                Model::synthetic(synthetic.clone(), 1, &gpu, &opts),
            ),
            ("built-in", Model::load_default(&gpu, &opts)),
        ];
        for (source, r) in results {
            let makeable = WeightDtype::QUANTIZABLE.contains(&dtype)
                || matches!(dtype, WeightDtype::F32 | WeightDtype::F16);
            match r {
                Ok(m) => {
                    assert!(makeable, "{dtype} from {source} loaded");
                    assert!(m.info().gpu_dtypes.contains(&dtype) || source == "GGUF");
                }
                Err(e) => {
                    assert!(!makeable, "{dtype} from {source}: {e}");
                    let e = e.to_string();
                    assert!(e.contains("does not quantize to it"), "{e}");
                    assert!(!e.contains('\n'));
                }
            }
        }
    }
}

#[test]
fn a_chat_template_that_writes_the_bos_gets_no_second_one() {
    let Some(gpu) = test_gpu() else { return };
    let dir = fixture("tiny-llama32-bf16");
    let model = Model::load(&dir, &gpu, &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let bos = tok.bos_token_id().unwrap();
    let template = model.chat_template().unwrap();
    let text = template
        .render(&[wgpt::Message::new("user", "Hi")], true)
        .unwrap();
    assert!(text.starts_with("<|begin_of_text|>"), "{text:?}");
    // The chat paths (`--chat`, `wgpt chat`, `/v1/chat/completions`, `Conversation`) encode the
    // rendered text as it is, as HF's apply_chat_template does: one BOS, the template's. (With
    // the specials a plain prompt gets, there would be two.)
    let ids = tok.encode(&text).unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == bos).count(), 1, "{ids:?}");
    let doubled = tok.encode_with_specials(&text).unwrap();
    assert_eq!(doubled.iter().filter(|&&t| t == bos).count(), 2);
}
