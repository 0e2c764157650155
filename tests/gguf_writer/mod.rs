//! A small GGUF v3 writer for the tests, and a converter of the `tiny-*` safetensors fixtures
//! into GGUF files laid out as llama.cpp's `convert_hf_to_gguf.py` lays them out: its tensor
//! names, GPT-2's `Conv1D` weights transposed to (out, in), Llama's q/k rows permuted per
//! head, GPT-NeoX's qkv rows regrouped q | k | v, Llama 3's rope scaling as a `rope_freqs`
//! tensor, the tokenizer as `tokenizer.ggml.*` metadata (padded to the vocabulary size).
#![allow(dead_code)]

use std::path::Path;

use serde_json::Value as Json;

/// A metadata value.
#[derive(Clone, Debug)]
pub enum Val {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// (element type, elements)
    Arr(u32, Vec<Val>),
    U64(u64),
}

impl Val {
    fn ty(&self) -> u32 {
        match self {
            Val::U32(_) => 4,
            Val::I32(_) => 5,
            Val::F32(_) => 6,
            Val::Bool(_) => 7,
            Val::Str(_) => 8,
            Val::Arr(..) => 9,
            Val::U64(_) => 10,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::U32(v) => out.extend(v.to_le_bytes()),
            Val::I32(v) => out.extend(v.to_le_bytes()),
            Val::F32(v) => out.extend(v.to_le_bytes()),
            Val::Bool(v) => out.push(*v as u8),
            Val::Str(s) => write_str(out, s),
            Val::U64(v) => out.extend(v.to_le_bytes()),
            Val::Arr(ty, items) => {
                out.extend(ty.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    i.write(out);
                }
            }
        }
    }
}

pub fn strs<S: AsRef<str>>(items: &[S]) -> Val {
    Val::Arr(
        8,
        items.iter().map(|s| Val::Str(s.as_ref().into())).collect(),
    )
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor: name, ggml `ne` (ne0 contiguous), ggml type id, bytes.
#[derive(Clone, Debug)]
pub struct TensorOut {
    pub name: String,
    pub ne: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

#[derive(Default, Clone)]
pub struct Writer {
    pub kv: Vec<(String, Val)>,
    pub tensors: Vec<TensorOut>,
}

impl Writer {
    pub fn kv(&mut self, key: &str, v: Val) {
        self.kv.push((key.into(), v));
    }

    /// A tensor given in PyTorch's shape order (outermost first).
    pub fn tensor(&mut self, name: &str, shape: &[usize], ty: u32, data: Vec<u8>) {
        self.tensors.push(TensorOut {
            name: name.into(),
            ne: shape.iter().rev().map(|&d| d as u64).collect(),
            ty,
            data,
        });
    }

    /// The file (alignment 32).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            write_str(&mut out, k);
            out.extend(v.ty().to_le_bytes());
            v.write(&mut out);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset += (t.data.len() as u64).next_multiple_of(32);
        }
        out.resize(out.len().next_multiple_of(32), 0);
        for t in &self.tensors {
            out.extend(&t.data);
            out.resize(out.len().next_multiple_of(32), 0);
        }
        out
    }
}

/// A safetensors tensor: dtype name, shape, bytes.
struct St {
    dtype: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_dir_tensors(dir: &Path) -> Vec<(String, St)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            out.push((
                name.to_string(),
                St {
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                },
            ));
        }
    }
    // `SafeTensors::tensors` comes in hash order: sort, so that a file (and the seeded
    // mutations of it in tests/robustness.rs) is the same in every run.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn ggml_type(dtype: &str) -> u32 {
    match dtype {
        "F32" => 0,
        "F16" => 1,
        "BF16" => 30,
        d => panic!("dtype {d}"),
    }
}

/// Rows of an (rows, …) tensor reordered: output row r is input row `src(r)`.
fn reorder_rows(data: &[u8], rows: usize, src: impl Fn(usize) -> usize) -> Vec<u8> {
    let row = data.len() / rows;
    (0..rows)
        .flat_map(|r| data[src(r) * row..(src(r) + 1) * row].iter().copied())
        .collect()
}

/// The transpose of an (a, b) matrix of `el`-byte elements.
fn transpose(data: &[u8], a: usize, b: usize, el: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for i in 0..a {
        for j in 0..b {
            let s = (i * b + j) * el;
            let d = (j * a + i) * el;
            out[d..d + el].copy_from_slice(&data[s..s + el]);
        }
    }
    out
}

/// The tokenizer metadata of a `tokenizer.json`, as the converter writes it
/// (`_set_vocab_gpt2`), padded with `[PAD{i}]` entries up to `vocab_size`.
pub fn tokenizer_kv(w: &mut Writer, tokenizer_json: &Json, vocab_size: usize, pre: &str) {
    let model = &tokenizer_json["model"];
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    for (t, id) in model["vocab"].as_object().unwrap() {
        tokens[id.as_u64().unwrap() as usize] = Some(t.clone());
    }
    for a in tokenizer_json["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = Some(a["content"].as_str().unwrap().into());
        types[id] = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Json::String(s) => s.clone(),
            Json::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            _ => panic!("merge {m}"),
        })
        .collect();
    w.kv("tokenizer.ggml.model", Val::Str("gpt2".into()));
    w.kv("tokenizer.ggml.pre", Val::Str(pre.into()));
    w.kv("tokenizer.ggml.tokens", strs(&tokens));
    w.kv(
        "tokenizer.ggml.token_type",
        Val::Arr(5, types.into_iter().map(Val::I32).collect()),
    );
    w.kv("tokenizer.ggml.merges", strs(&merges));
}

/// A `tiny-*` fixture directory as the GGUF file llama.cpp's converter would write.
pub fn convert_fixture(dir: &Path) -> Vec<u8> {
    fixture_writer(dir).bytes()
}

/// [`convert_fixture`]'s metadata and tensors, before they are written.
pub fn fixture_writer(dir: &Path) -> Writer {
    let cfg: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tok: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let model_type = cfg["model_type"].as_str().unwrap();
    let arch = match model_type {
        "gpt2" => "gpt2",
        "llama" | "mistral" => "llama",
        "qwen2" => "qwen2",
        "gpt_neox" => "gptneox",
        m => panic!("model_type {m}"),
    };
    let mut w = Writer::default();
    w.kv("general.architecture", Val::Str(arch.into()));
    w.kv("general.alignment", Val::U32(32));
    let a = |k: &str| format!("{arch}.{k}");
    let vocab = u("vocab_size");
    let rope = cfg.get("rope_parameters").cloned().unwrap_or(Json::Null);
    match arch {
        "gpt2" => {
            w.kv(&a("block_count"), Val::U32(u("n_layer") as u32));
            w.kv(&a("context_length"), Val::U32(u("n_positions") as u32));
            w.kv(&a("embedding_length"), Val::U32(u("n_embd") as u32));
            // As the converter does: 4·n_embd whatever n_inner is.
            w.kv(&a("feed_forward_length"), Val::U32(4 * u("n_embd") as u32));
            w.kv(&a("attention.head_count"), Val::U32(u("n_head") as u32));
            let eps = cfg["layer_norm_epsilon"].as_f64().unwrap_or(1e-5) as f32;
            w.kv(&a("attention.layer_norm_epsilon"), Val::F32(eps));
        }
        "gptneox" => {
            let (c, h) = (u("hidden_size"), u("num_attention_heads"));
            w.kv(
                &a("context_length"),
                Val::U32(u("max_position_embeddings") as u32),
            );
            w.kv(&a("embedding_length"), Val::U32(c as u32));
            w.kv(&a("block_count"), Val::U32(u("num_hidden_layers") as u32));
            w.kv(
                &a("feed_forward_length"),
                Val::U32(u("intermediate_size") as u32),
            );
            let pct = rope["partial_rotary_factor"].as_f64().unwrap_or(0.25);
            w.kv(
                &a("rope.dimension_count"),
                Val::U32((pct * (c / h) as f64) as u32),
            );
            w.kv(&a("attention.head_count"), Val::U32(h as u32));
            let par = cfg["use_parallel_residual"].as_bool().unwrap_or(true);
            w.kv(&a("use_parallel_residual"), Val::Bool(par));
            let eps = cfg["layer_norm_eps"].as_f64().unwrap_or(1e-5) as f32;
            w.kv(&a("attention.layer_norm_epsilon"), Val::F32(eps));
        }
        _ => {
            w.kv(&a("block_count"), Val::U32(u("num_hidden_layers") as u32));
            w.kv(
                &a("context_length"),
                Val::U32(u("max_position_embeddings") as u32),
            );
            w.kv(&a("embedding_length"), Val::U32(u("hidden_size") as u32));
            w.kv(
                &a("feed_forward_length"),
                Val::U32(u("intermediate_size") as u32),
            );
            w.kv(
                &a("attention.head_count"),
                Val::U32(u("num_attention_heads") as u32),
            );
            w.kv(
                &a("attention.head_count_kv"),
                Val::U32(u("num_key_value_heads") as u32),
            );
            let theta = rope["rope_theta"].as_f64().unwrap_or(10_000.0) as f32;
            w.kv(&a("rope.freq_base"), Val::F32(theta));
            let eps = cfg["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32;
            w.kv(&a("attention.layer_norm_rms_epsilon"), Val::F32(eps));
            if let Some(hd) = cfg["head_dim"].as_u64() {
                w.kv(&a("attention.key_length"), Val::U32(hd as u32));
                w.kv(&a("attention.value_length"), Val::U32(hd as u32));
            }
            w.kv(&a("vocab_size"), Val::U32(vocab as u32));
            let hd = cfg["head_dim"]
                .as_u64()
                .map_or(u("hidden_size") / u("num_attention_heads"), |h| h as usize);
            w.kv(&a("rope.dimension_count"), Val::U32(hd as u32));
        }
    }
    tokenizer_kv(&mut w, &tok, vocab, "gpt-2");
    let eos: Vec<u64> = match &cfg["eos_token_id"] {
        Json::Array(a) => a.iter().map(|x| x.as_u64().unwrap()).collect(),
        x => x.as_u64().into_iter().collect(),
    };
    if let Some(&e) = eos.first() {
        w.kv("tokenizer.ggml.eos_token_id", Val::U32(e as u32));
    }
    if let Some(&e) = eos.get(1) {
        w.kv("tokenizer.ggml.eot_token_id", Val::U32(e as u32));
    }
    if let Some(b) = cfg["bos_token_id"].as_u64() {
        w.kv("tokenizer.ggml.bos_token_id", Val::U32(b as u32));
    }
    // Llama 3's rope scaling, as `LlamaModel.generate_extra_tensors` computes it (f32 freqs).
    if arch == "llama" && rope["rope_type"] == "llama3" {
        let hd = cfg["head_dim"].as_u64().unwrap() as usize;
        let base = rope["rope_theta"].as_f64().unwrap();
        let f = |k: &str| rope[k].as_f64().unwrap();
        let (factor, low, high, old) = (
            f("factor"),
            f("low_freq_factor"),
            f("high_freq_factor"),
            f("original_max_position_embeddings"),
        );
        let factors: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let freq = 1.0 / (base as f32).powf((2 * i) as f32 / hd as f32);
                let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
                if wavelen < old / high {
                    1.0
                } else if wavelen > old / low {
                    factor as f32
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect();
        w.tensor(
            "rope_freqs.weight",
            &[hd / 2],
            0,
            factors.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    let heads = cfg["num_attention_heads"]
        .as_u64()
        .or(cfg["n_head"].as_u64())
        .unwrap() as usize;
    let kv_heads = cfg["num_key_value_heads"]
        .as_u64()
        .map_or(heads, |k| k as usize);
    for (name, t) in read_dir_tensors(dir) {
        let Some(gname) = gguf_name(arch, &name) else {
            continue;
        };
        let ty = ggml_type(&t.dtype);
        let el = if ty == 0 { 4 } else { 2 };
        let mut shape = t.shape.clone();
        let mut data = t.data;
        let rows = shape[0];
        // LlamaModel.permute: within each head, rows (2, hd/2) → (hd/2, 2).
        let permute = |data: &[u8], n_head: usize| {
            let hd = rows / n_head;
            reorder_rows(data, rows, |r| {
                let (h, w) = (r / hd, r % hd);
                let (i, j) = (w / 2, w % 2);
                h * hd + j * (hd / 2) + i
            })
        };
        if arch == "llama" && gname.contains("attn_q.") {
            data = permute(&data, heads);
        } else if arch == "llama" && gname.contains("attn_k.") {
            data = permute(&data, kv_heads);
        } else if arch == "gptneox" && gname.contains("attn_qkv") {
            let hd = rows / 3 / heads;
            let c = heads * hd;
            data = reorder_rows(&data, rows, |r| {
                let (part, h, d) = (r / c, (r % c) / hd, r % hd);
                h * 3 * hd + part * hd + d
            });
        } else if arch == "gpt2"
            && shape.len() == 2
            && gname.ends_with(".weight")
            && gname.starts_with("blk.")
        {
            data = transpose(&data, shape[0], shape[1], el);
            shape.reverse();
        }
        w.tensor(&gname, &shape, ty, data);
    }
    w
}

/// The converter's GGUF name of a checkpoint tensor (`None` for buffers it drops).
fn gguf_name(arch: &str, name: &str) -> Option<String> {
    let name = name
        .strip_prefix("transformer.")
        .or(name.strip_prefix("model."))
        .or(name.strip_prefix("gpt_neox."))
        .unwrap_or(name);
    let (base, suffix) = name.rsplit_once('.')?;
    let top = match base {
        "wte" | "embed_tokens" | "embed_in" => Some("token_embd"),
        "wpe" => Some("position_embd"),
        "ln_f" | "norm" | "final_layer_norm" => Some("output_norm"),
        "lm_head" | "embed_out" => Some("output"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{suffix}"));
    }
    let rest = base.strip_prefix("h.").or(base.strip_prefix("layers."))?;
    let (l, part) = rest.split_once('.')?;
    let g = match (arch, part) {
        ("gpt2", "ln_1") => "attn_norm",
        ("gpt2", "attn.c_attn") => "attn_qkv",
        ("gpt2", "attn.c_proj") => "attn_output",
        ("gpt2", "ln_2") => "ffn_norm",
        ("gpt2", "mlp.c_fc") => "ffn_up",
        ("gpt2", "mlp.c_proj") => "ffn_down",
        ("gptneox", "input_layernorm") => "attn_norm",
        ("gptneox", "attention.query_key_value") => "attn_qkv",
        ("gptneox", "attention.dense") => "attn_output",
        ("gptneox", "post_attention_layernorm") => "ffn_norm",
        ("gptneox", "mlp.dense_h_to_4h") => "ffn_up",
        ("gptneox", "mlp.dense_4h_to_h") => "ffn_down",
        (_, "input_layernorm") => "attn_norm",
        (_, "self_attn.q_proj") => "attn_q",
        (_, "self_attn.k_proj") => "attn_k",
        (_, "self_attn.v_proj") => "attn_v",
        (_, "self_attn.o_proj") => "attn_output",
        (_, "post_attention_layernorm") => "ffn_norm",
        (_, "mlp.gate_proj") => "ffn_gate",
        (_, "mlp.up_proj") => "ffn_up",
        (_, "mlp.down_proj") => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{l}.{g}.{suffix}"))
}
