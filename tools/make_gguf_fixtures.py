#!/usr/bin/env python3
"""GGUF golden fixtures: tiny Llama and GPT-2 checkpoints converted and quantized by
llama.cpp itself, each with a float64 HF-transformers reference of exactly the
weights the file holds.

Run from the repository root (needs the packages in tools/requirements.txt and a
llama.cpp source tree; `llama-quantize` built in it for the Q4_0 / Q4_K_M files):

    python tools/make_gguf_fixtures.py --llama-cpp /work/peers/llama.cpp
    python tools/make_gguf_fixtures.py --llama-cpp DIR --only tiny-gpt2     # one model
    python tools/make_gguf_fixtures.py --llama-cpp DIR --no-quantize        # F16 / Q8_0 only
    python tools/make_gguf_fixtures.py --llama-cpp DIR --keep-f16           # + the F16 files
    python tools/make_gguf_fixtures.py --llama-cpp DIR --only tiny-neox tiny-qwen2  # no build needed

Deterministic (fixed seeds, one torch thread; llama-quantize output is
deterministic too).  Rewrites the files of the selected models in
tests/fixtures/gguf/ and its manifest.json (the README.md there is written by
hand); scratch files (the f32 HF checkpoints, and the F16 GGUF files with their
references unless --keep-f16) go to --work-dir (default /tmp/wgpt-gguf-build).

Models (random weights, init as in tools/make_fixtures.py scaled to the width:
linear weights N(0, 0.08^2), token embeddings N(0, 0.15^2), GPT-2 positions
N(0, 0.1^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.05^2); every matrix row
length is a multiple of 256 so that llama-quantize writes real K-quants):

  tiny-llama  LlamaForCausalLM: hidden 256, 4 heads of 64 / 2 key-value heads
              (GQA), intermediate 512, 2 layers, max_position_embeddings 64,
              rms_norm_eps 1e-5, untied lm_head, rope_parameters llama3
              (rope_theta 10000, factor 4, low_freq_factor 1, high_freq_factor 4,
              original_max_position_embeddings 32): the GGUF carries rope_freqs.
  tiny-gpt2   GPT2LMHeadModel: n_embd 256, n_inner 1024 (llama.cpp assumes 4 x
              n_embd), 4 heads, 2 layers, n_positions 64, gelu_new, tied head.
  Both: vocab_size 389 (tests/fixtures/tokenizer.json has 384 tokens, the
  converter pads the token list with [PAD384]..[PAD388]); bos = eos =
  <|endoftext|> (id 0); tokenizer_config.json says add_bos_token false.

Models converted from existing HF fixtures (MODELS entries with "source"; no
random weights, no llama-quantize: only the listed convert_hf_to_gguf.py types,
all kept in tests/fixtures/gguf):

  tiny-neox   tests/fixtures/tiny-neox-par-f32 (GPTNeoXForCausalLM, parallel
              residual, partial rotary 0.25, f32, 3 shards + Pythia buffers,
              no tokenizer_config.json) -> tiny-neox-f16.gguf (--outtype f16).
              The converter's GPTNeoXModel.set_gguf_parameters reads
              hparams["rotary_pct"], which transformers 5's
              AutoConfig(...).to_dict() never has (it folds rotary_pct into
              rope_parameters.partial_rotary_factor, even for a Hub config.json
              that has rotary_pct), so b11312 cannot convert any GPT-NeoX
              checkpoint under transformers 5 (KeyError: 'rotary_pct').  The
              wrapper sets hparams["rotary_pct"] = rope_parameters'
              partial_rotary_factor when it is missing (printed as a note).  The
              converter regroups query_key_value from per-head [q k v] to
              [q; k; v] rows (weight and bias); the reference undoes that.
              The converter writes no gptneox.rope.freq_base (llama.cpp's
              default 10000 = the fixture's rope_theta).
  tiny-qwen2  tests/fixtures/tiny-qwen2-bf16 (Qwen2ForCausalLM, q/k/v biases,
              tied, bf16, intermediate 136) -> tiny-qwen2-q8_0.gguf (--outtype
              q8_0).  ffn_down's rows (136) are not whole Q8_0 blocks, so the
              converter writes those two tensors as F16.  No q/k permutation
              (Qwen2 is a NEOX-rope model in llama.cpp).
  The config.json / tokenizer files are the fixture's, unchanged (the
  directory is copied to --work-dir under the model's name, which becomes
  general.name).  Checks: every GGUF tensor, converter transforms undone,
  equals the checkpoint as the file's type stores it, bit for bit (F32: the
  checkpoint's values; F16: rounded to f16; Q8_0: gguf.quants.quantize of the
  checkpoint's float32 values, dequantized); the checkpoint's float64 logits
  equal the fixture's reference.json; HF equals make_fixtures.py's hand-written
  float64 forward (< 1e-10); the fixture's tokenizer.json encodes the prompts
  and the held-out slice to the same ids as tests/fixtures/tokenizer.json.
  Prompt, greedy and perplexity protocol as for the other models (perplexity
  windows of max_position_embeddings: 64 for tiny-neox, 48 for tiny-qwen2).

Per model, files <model>-<type>.gguf for type in
  f16, q8_0   convert_hf_to_gguf.py --outtype f16 / q8_0 (from the f32 checkpoint;
              f16 kept in tests/fixtures/gguf only with --keep-f16: +6.2 MB)
  q4_0, q4_k_m  llama-quantize <model>-f16.gguf ... Q4_0 / Q4_K_M
and next to each <model>-<type>.reference.json with the keys tools/make_fixtures.py
writes (prompt_ids, logits [13 x 389], greedy_prompt_ids, greedy_ids,
greedy_margins, ppl_*; same prompts, same perplexity protocol on
tests/fixtures/heldout_slice.txt with 64-token windows) plus gguf_file and
tensor_types ({gguf tensor name: ggml type name}).  Also <model>-hf/ with the
checkpoint's config.json, generation_config.json, tokenizer.json and
tokenizer_config.json (no weights: the f32 weights are in --work-dir; for the
"source" models those of the four files the fixture has: tiny-neox-par-f32 has
no tokenizer_config.json).

manifest.json: the top-level gguf / transformers / torch versions are those of
the last run that regenerated every model; each entry made by this version of
the script also records its own ("versions").

Reference = every tensor of the GGUF dequantized with gguf.quants.dequantize (as
float32, then float64), the converter's transformations undone (Llama: the
q_proj / k_proj row permutation of convert_hf_to_gguf's LlamaModel.permute is
inverted; GPT-2: the Conv1D weights it transposed are transposed back; names
mapped back with gguf's tensor name map), loaded into the HF model class built
from the ORIGINAL config.json, in float64 with tools/make_fixtures.py's
float64_exact patches (float64 RoPE incl. the llama3 rule from config.json,
RMSNorm, softmax).  The GGUF's rope_freqs tensor is not an HF weight: the script
checks that base_freq / rope_freqs equals the llama3 rule to float32 precision.
Checks: the F16 file, un-transformed, equals the f32 checkpoint rounded to f16
bit for bit (proves the inverse permutation / transposition / name map); for
tiny-llama the patched HF logits equal tools/make_fixtures.py's hand-written
float64 forward (< 1e-10).  With the llama-perplexity binary built, its CPU
perplexity on the held-out slice is compared with the same quantity computed
from the reference model (llama.cpp scores only the second half of each window).

convert_hf_to_gguf.py does not know the pre-tokenizer hash of our 384-token
tokenizer; its pre-tokenizer is ByteLevel with GPT-2's regex (use_regex true, no
normalizer), i.e. llama.cpp's "gpt-2" pre-tokenizer, so the script runs the
converter with get_vocab_base_pre patched to answer "gpt-2" for an unknown hash
(after checking tokenizer.json has that pre-tokenizer).  The only other change
is the GPT-NeoX rotary_pct fallback above (it only touches GPTNeoXModel);
tokenizer.ggml.model is "gpt2".
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the float64 reference machinery)

import gguf  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import GPT2LMHeadModel, LlamaForCausalLM  # noqa: E402

REPO_ROOT = mf.REPO_ROOT
FIX = mf.FIX
OUT = os.path.join(FIX, "gguf")

STD_LINEAR = 0.08
STD_WTE = 0.15
STD_WPE = 0.1
STD_LN = 0.1
STD_BIAS = 0.05

LLAMA3_ROPE = dict(
    rope_type="llama3", rope_theta=10000.0, factor=4.0, low_freq_factor=1.0,
    high_freq_factor=4.0, original_max_position_embeddings=32,
)
MODELS = [
    dict(
        name="tiny-llama", family="llama", seed=1501, hidden_size=256, n_head=4, n_kv_head=2,
        head_dim=64, intermediate_size=512, n_layer=2, n_positions=64, rms_norm_eps=1e-5,
        rope_parameters=LLAMA3_ROPE, tie=False, style="hf",
    ),
    dict(
        name="tiny-gpt2", family="gpt2", seed=1502, n_embd=256, n_head=4, n_layer=2, n_inner=1024,
        n_positions=64, activation_function="gelu_new", tie=True, style="hf",
    ),
    # Converted from existing HF fixtures (see the module docstring): only `gguf_types`, all kept.
    dict(name="tiny-neox", family="neox", source="tiny-neox-par-f32", gguf_types=["f16"]),
    dict(name="tiny-qwen2", family="qwen2", source="tiny-qwen2-bf16", gguf_types=["q8_0"]),
]
GGUF_TYPES = ["f16", "q8_0", "q4_0", "q4_k_m"]
CONVERT_TYPES = {"f16": "f16", "q8_0": "q8_0"}
QUANTIZE_TYPES = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}

# Runs llama.cpp's convert_hf_to_gguf.py with one change: an unknown BPE
# pre-tokenizer hash is taken as "gpt-2" (see the module docstring).
CONVERT_WRAPPER = r"""
import os, runpy, sys
conv = sys.argv[1]
root = os.path.dirname(os.path.abspath(conv))
sys.argv = [conv] + sys.argv[2:]
sys.path.insert(0, root)
sys.path.insert(1, os.path.join(root, "gguf-py"))
import conversion.base as base
_orig = base.TextModel.get_vocab_base_pre
def _pre(self, tokenizer):
    try:
        return _orig(self, tokenizer)
    except NotImplementedError:
        print("make_gguf_fixtures: unknown pre-tokenizer hash -> 'gpt-2' (ByteLevel, GPT-2 regex)", flush=True)
        return "gpt-2"
base.TextModel.get_vocab_base_pre = _pre
# GPT-NeoX: transformers 5's config dict has no rotary_pct (see the module docstring).
import conversion.gptneox as gptneox
_neox_params = gptneox.GPTNeoXModel.set_gguf_parameters
def _neox_set_gguf_parameters(self):
    if "rotary_pct" not in self.hparams:
        pct = (self.hparams.get("rope_parameters") or {}).get("partial_rotary_factor")
        if pct is not None:
            print(f"make_gguf_fixtures: GPT-NeoX hparams have no rotary_pct -> rope_parameters.partial_rotary_factor {pct}", flush=True)
            self.hparams["rotary_pct"] = pct
    return _neox_params(self)
gptneox.GPTNeoXModel.set_gguf_parameters = _neox_set_gguf_parameters
runpy.run_path(conv, run_name="__main__")
"""


def init_std_mean(fam, name):
    if name.endswith(("wte.weight", "embed_tokens.weight")):
        return STD_WTE, 0.0
    if name.endswith("wpe.weight"):
        return STD_WPE, 0.0
    if name.endswith(".bias"):
        return STD_BIAS, 0.0
    leaf = name.split(".")[-2]
    if leaf.startswith("ln_") or leaf.endswith("layernorm") or leaf == "norm":
        return STD_LN, 1.0
    if name.endswith(".weight"):
        return STD_LINEAR, 0.0
    raise RuntimeError(name)


@torch.no_grad()
def init_weights(model, seed, fam):
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        std, mean = init_std_mean(fam, name)
        params[name].copy_(torch.randn(params[name].shape, generator=gen, dtype=torch.float32) * std + mean)


def tokenizer_config(n_positions):
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "bos_token": mf.SPECIAL,
        "clean_up_tokenization_spaces": False,
        "eos_token": mf.SPECIAL,
        "model_max_length": n_positions,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def check_tokenizer_is_gpt2_style(tok_path):
    with open(tok_path, encoding="utf-8") as f:
        t = json.load(f)
    pre = t["pre_tokenizer"]
    assert pre["type"] == "ByteLevel" and pre.get("use_regex", True) and not pre["add_prefix_space"], pre
    assert t["normalizer"] is None and t["model"]["type"] == "BPE", (t["normalizer"], t["model"]["type"])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, shown=None, **kw):
    print("+ " + " ".join(shown or cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        sys.stdout.write(res.stdout[-4000:])
        sys.stderr.write(res.stderr[-4000:])
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(shown or cmd)}")
    return res


# ----------------------------------------------------------------------------
def build_checkpoint(spec, hf_dir, tok_path, eos_id):
    fam = mf.family(spec)
    cfg = mf.make_config(spec, eos_id)
    mf.check_shapes(spec, cfg)
    cls = mf.MODEL_CLASSES[fam]
    torch.manual_seed(spec["seed"])
    model = cls(cfg)
    init_weights(model, spec["seed"], fam)
    model = model.to(torch.float32).eval()
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    os.makedirs(hf_dir)
    mf.save_hf(model, hf_dir, spec)
    if fam == "gpt2":
        # convert_hf_to_gguf's GPT2Model reads hparams["n_ctx"], which transformers 5 no
        # longer writes; the Hub's GPT-2 configs carry it (= n_positions).
        path = os.path.join(hf_dir, "config.json")
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        assert "n_ctx" not in c
        c["n_ctx"] = spec["n_positions"]
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(c, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(tok_path, os.path.join(hf_dir, "tokenizer.json"))
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tokenizer_config(spec["n_positions"]), indent=2) + "\n")
    files, tensors = mf.stored_tensors(hf_dir)
    assert files == ["model.safetensors"], files
    assert {str(v.dtype) for v in tensors.values()} == {"torch.float32"}
    return cfg, tensors


def source_checkpoint(spec, hf_dir, tok, heldout, prompt_ids, greedy_prompts):
    """A "source" model: the HF fixture directory copied (reference*.json left out) to
    hf_dir, loaded as transformers 5 loads it.  Returns (model spec filled in from the
    fixture, config, {HF parameter name: tensor as stored}, fixture reference, notes)."""
    src_spec = next(m for m in mf.MODELS if m["name"] == spec["source"])
    assert mf.family(src_spec) == spec["family"], (src_spec, spec)
    src = os.path.join(FIX, spec["source"])
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    shutil.copytree(src, hf_dir, ignore=shutil.ignore_patterns("reference*.json"))
    with open(os.path.join(src, "reference.json")) as f:
        fixture_ref = json.load(f)
    cls = mf.MODEL_CLASSES[spec["family"]]
    model, info, _ = mf.load_with_report(hf_dir, cls=cls)
    unexpected = [k for k in info["unexpected_keys"] if not mf.is_buffer_key(k)]
    assert not (info["missing_keys"] or unexpected or info["mismatched_keys"]), info
    cfg = model.config
    files, stored = mf.stored_tensors(hf_dir)
    tensors = {}
    for k, v in stored.items():
        hk = mf.hf_key(src_spec, k)
        if hk is not None:
            tensors[hk] = v
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v), k
    full = dict(spec, tie=bool(cfg.tie_word_embeddings), n_positions=int(cfg.max_position_embeddings),
                n_layer=int(cfg.num_hidden_layers),
                style=src_spec["style"], dtype=src_spec["dtype"])
    assert ("lm_head.weight" in tensors) == (not full["tie"])
    notes = [f"source: tests/fixtures/{spec['source']} ({', '.join(files)}; "
             f"{sorted({str(v.dtype).replace('torch.', '') for v in tensors.values()})})"]
    # The fixture's own tokenizer.json gives the ids of tests/fixtures/tokenizer.json.
    ftok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    assert ftok.encode(heldout, add_special_tokens=False).ids == tok.encode(heldout, add_special_tokens=False).ids
    for ids, text in [(prompt_ids, mf.PROMPT_TEXT)] + list(zip(greedy_prompts, mf.GREEDY_PROMPT_TEXTS)):
        assert mf.fixed_ids(ftok, text, len(ids), tok.token_to_id(mf.SPECIAL)) == ids
    assert fixture_ref["prompt_ids"] == list(prompt_ids)
    return full, cfg, tensors, fixture_ref, notes


def as_stored(w, tname):
    """A checkpoint tensor as a GGUF tensor of type `tname` holds it (float64): F32 the
    float32 values, F16 rounded to f16, Q8_0 quantized and dequantized by gguf.quants
    (rows along the last axis, as the converter quantizes)."""
    x = w.to(torch.float32).numpy()
    if tname == "F32":
        out = x
    elif tname == "F16":
        out = x.astype(np.float16).astype(np.float32)
    else:
        qt = gguf.GGMLQuantizationType[tname]
        out = gguf.quants.dequantize(gguf.quants.quantize(x, qt), qt).reshape(x.shape)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64))


def convert(llama_cpp, hf_dir, out_path, outtype):
    conv = os.path.join(llama_cpp, "convert_hf_to_gguf.py")
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    args = [conv, hf_dir, "--outtype", outtype, "--outfile", out_path]
    res = run([sys.executable, "-c", CONVERT_WRAPPER] + args, shown=["python", "<pre-tokenizer wrapper>"] + args, env=env)
    notes = [line for line in (res.stdout + res.stderr).splitlines() if "make_gguf_fixtures:" in line]
    return notes


def quantize(quantize_bin, src, dst, qtype):
    res = run([quantize_bin, src, dst, qtype, "2"])
    return res.stdout + res.stderr


def gguf_arch(reader):
    f = reader.fields["general.architecture"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def read_gguf(path):
    """{name: (type name, float32 array in numpy shape, raw type)} of every tensor."""
    reader = GGUFReader(path)
    out = {}
    for t in reader.tensors:
        qt = gguf.GGMLQuantizationType(t.tensor_type)
        arr = gguf.quants.dequantize(t.data, qt)
        arr = np.asarray(arr, dtype=np.float32)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # ggml ne is reversed
        arr = arr.reshape(shape)
        out[t.name] = (qt.name, arr)
    return reader, out


def llama_unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute(w, n_head, n_head)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def llama_permute(w, n_head):
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


GPT2_CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")
GGUF_ARCHES = {"llama": gguf.MODEL_ARCH.LLAMA, "gpt2": gguf.MODEL_ARCH.GPT2,
               "gptneox": gguf.MODEL_ARCH.GPTNEOX, "qwen2": gguf.MODEL_ARCH.QWEN2}


def neox_qkv_ungroup(w, n_head):
    """Inverse of convert_hf_to_gguf's GPTNeoXModel regrouping of query_key_value
    (weight or bias): GGUF rows [q (all heads); k; v] -> HF rows [head h: q, k, v]."""
    rows = w.shape[0]
    hd = rows // 3 // n_head
    return (w.reshape(3, n_head, hd, *w.shape[1:])
            .swapaxes(0, 1)
            .reshape(w.shape))


def to_hf_state_dict(spec, cfg, arch, gg, hf_names):
    """Map the dequantized GGUF tensors back to HF names and layouts (float64)."""
    fam = mf.family(spec)
    n_layer = spec["n_layer"]
    arch_enum = GGUF_ARCHES[arch]
    tmap = gguf.get_tensor_name_map(arch_enum, n_layer)
    back = {}
    for hn in hf_names:
        gn = tmap.get_name(hn, try_suffixes=(".weight", ".bias"))
        assert gn is not None, hn
        assert gn not in back, (gn, hn, back.get(gn))
        back[gn] = hn
    sd, hf_types = {}, {}
    for gn, (tname, arr) in gg.items():
        if gn == "rope_freqs.weight":
            continue
        if gn not in back:
            raise RuntimeError(f"GGUF tensor {gn} has no HF counterpart")
        hn = back[gn]
        w = arr.astype(np.float64)
        if fam == "llama":
            if hn.endswith("self_attn.q_proj.weight"):
                w = llama_unpermute(w, cfg.num_attention_heads)
            elif hn.endswith("self_attn.k_proj.weight"):
                w = llama_unpermute(w, cfg.num_key_value_heads)
        elif fam == "gpt2":
            if hn.endswith(GPT2_CONV1D):
                w = w.T
        elif fam == "neox":
            if hn.endswith(("attention.query_key_value.weight", "attention.query_key_value.bias")):
                w = neox_qkv_ungroup(w, cfg.num_attention_heads)
        sd[hn] = torch.from_numpy(np.ascontiguousarray(w))
        hf_types[hn] = tname
    return sd, hf_types


def rope_freqs_check(cfg, gg):
    """base inverse frequencies / rope_freqs vs the llama3 rule in float64."""
    if "rope_freqs.weight" not in gg:
        return None
    tname, rf = gg["rope_freqs.weight"]
    rp = cfg.rope_parameters
    d = mf.llama_head_dim(cfg)
    base = 1.0 / (float(rp["rope_theta"]) ** (np.arange(0, d, 2, dtype=np.float64) / d))
    llama_cpp = base / rf.astype(np.float64)
    rule = mf.llama_inv_freq_f64(cfg).numpy()
    return tname, rf.shape, float(np.max(np.abs(llama_cpp - rule) / rule))


def load_reference_model(spec, cfg, sd):
    fam = mf.family(spec)
    cls = mf.MODEL_CLASSES[fam]
    model = cls(cfg).to(torch.float64)
    model.set_attn_implementation("eager")
    if spec["tie"]:
        assert "lm_head.weight" not in sd
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not (spec["tie"] and k == "lm_head.weight")]
    assert not missing and not res.unexpected_keys, (missing, res.unexpected_keys)
    if spec["tie"]:
        model.tie_weights()
        assert torch.equal(model.lm_head.weight, model.get_input_embeddings().weight)
    covered = set(sd)
    for pname, _ in model.named_parameters():
        assert pname in covered, pname
    return model.eval()


@torch.no_grad()
def llama_cpp_ppl_protocol(model, tok, text, ctx):
    """What llama-perplexity prints (no BOS, as add_bos_token is false): windows of
    `ctx` tokens, each scoring the tokens after its first half; ppl = exp(mean NLL)."""
    ids = tok.encode(text, add_special_tokens=False).ids
    n_chunks = len(ids) // ctx
    nll, n = 0.0, 0
    first = ctx // 2
    for c in range(n_chunks):
        w = ids[c * ctx:(c + 1) * ctx]
        lg = mf.logits_for(model, w)
        logp = torch.log_softmax(lg, dim=-1)
        for j in range(first, ctx - 1):
            nll -= float(logp[j, w[j + 1]])
            n += 1
    return math.exp(nll / n), n_chunks


def llama_perplexity(bin_path, gguf_path, text_path, ctx, threads=2):
    """llama-perplexity's final estimate on the CPU backend.  Its logger sometimes loses
    the last lines when the process exits, so it is run up to 3 times."""
    for _ in range(3):
        res = run([bin_path, "-m", gguf_path, "-f", text_path, "-c", str(ctx), "-b", str(ctx),
                   "-t", str(threads), "-ngl", "0", "--no-repack", "-dev", "none"],
                  env=dict(os.environ, GGML_VK_VISIBLE_DEVICES=""))
        text = res.stdout + res.stderr
        for line in text.splitlines():
            if "Final estimate: PPL" in line:
                return float(line.split("=")[1].split("+/-")[0]), text
    raise RuntimeError(f"llama-perplexity printed no final estimate for {gguf_path}:\n{text[-2000:]}")


# ----------------------------------------------------------------------------
def reference_for(spec, cfg, model, tok, heldout, prompt_ids, greedy_prompts):
    fam = mf.family(spec)
    notes = []
    with mf.float64_exact(model):
        logits = mf.logits_for(model, prompt_ids)
        if fam in mf.LLAMA_FAMILIES or fam == "neox":
            sd64 = {k: v for k, v in model.state_dict().items()}
            hand = mf.handwritten_logits(dict(spec, family=fam), cfg, sd64, prompt_ids)
            d = float((logits - hand).abs().max())
            notes.append(f"float64 check: max|HF_f64exact - handwritten| = {d:.3g}")
            assert d < 1e-10, d
            if fam in mf.LLAMA_FAMILIES:
                assert model.model.norm.f64_calls >= 1 and model.model.rotary_emb.f64_calls >= 1
            else:
                assert model.gpt_neox.rotary_emb.f64_calls >= 1
        k, greedy_ids, margins = mf.pick_greedy_prompt(model, greedy_prompts)
        greedy_prompt = greedy_prompts[k]
        gen_ids = mf.greedy_via_generate(model, greedy_prompt, mf.GREEDY_NEW)
        assert gen_ids == greedy_ids, (gen_ids, greedy_ids)
        ppl, n_ids, n_windows = mf.perplexity(model, tok, heldout, spec["n_positions"])
        lcpp_ppl, lcpp_chunks = llama_cpp_ppl_protocol(model, tok, heldout, spec["n_positions"])
    ref = {
        "prompt_ids": list(prompt_ids),
        "logits": [[float(v) for v in row] for row in logits.tolist()],
        "greedy_prompt_ids": list(greedy_prompt),
        "greedy_ids": greedy_ids,
        "greedy_margins": margins,
    }
    ref.update(ppl)
    return ref, logits, notes, (lcpp_ppl, lcpp_chunks)


def build_model(spec, args, tok, tok_path, heldout, eos_id, prompt_ids, greedy_prompts, manifest):
    name = spec["name"]
    fam = mf.family(spec)
    work = os.path.join(args.work_dir, name)
    hf_dir = os.path.join(work, name)  # the directory name becomes general.name
    os.makedirs(work, exist_ok=True)
    source_notes, fixture_ref = [], None
    if "source" in spec:
        spec, cfg, hf_tensors, fixture_ref, source_notes = source_checkpoint(
            spec, hf_dir, tok, heldout, prompt_ids, greedy_prompts)
    else:
        cfg, hf_tensors = build_checkpoint(spec, hf_dir, tok_path, eos_id)
    # The small HF files (no weights) go into the fixtures.
    meta_dir = os.path.join(OUT, f"{name}-hf")
    if os.path.isdir(meta_dir):
        shutil.rmtree(meta_dir)
    os.makedirs(meta_dir)
    for fn in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if "source" in spec and not os.path.exists(os.path.join(hf_dir, fn)):
            source_notes.append(f"{name}-hf/: the source has no {fn}")
            continue
        shutil.copyfile(os.path.join(hf_dir, fn), os.path.join(meta_dir, fn))

    # Unquantized float64 model (to report how far each file's logits moved).
    orig_model = mf.MODEL_CLASSES[fam].from_pretrained(hf_dir, attn_implementation="eager").to(torch.float64).eval()
    with mf.float64_exact(orig_model):
        orig_logits = mf.logits_for(orig_model, prompt_ids)
    if fixture_ref is not None:
        d = float((orig_logits - torch.tensor(fixture_ref["logits"], dtype=torch.float64)).abs().max())
        source_notes.append(f"checkpoint float64 logits vs the fixture's reference.json: max |diff| {d:.3g}")
        assert d < 1e-10, d
    hf_names = [k for k in orig_model.state_dict() if not (spec["tie"] and k == "lm_head.weight")]
    hf_names = [k for k in hf_names if k in dict(orig_model.named_parameters()) or k in hf_tensors]

    quantize_bin = os.path.join(args.llama_cpp, "build", "bin", "llama-quantize")
    ppl_bin = os.path.join(args.llama_cpp, "build", "bin", "llama-perplexity")
    entries = []
    for gt in spec.get("gguf_types", GGUF_TYPES):
        kept = gt != "f16" or args.keep_f16 or "source" in spec
        dest = OUT if kept else work  # the F16 file is llama-quantize's input either way
        path = os.path.join(dest, f"{name}-{gt}.gguf")
        if not kept:
            for stale in (path, os.path.join(OUT, f"{name}-{gt}.gguf"), os.path.join(OUT, f"{name}-{gt}.reference.json")):
                if os.path.exists(stale) and os.path.dirname(stale) == OUT:
                    os.remove(stale)
        notes = list(source_notes)
        if gt in CONVERT_TYPES:
            notes += convert(args.llama_cpp, hf_dir, path, CONVERT_TYPES[gt])
        else:
            if args.no_quantize:
                print(f"[{name}] skipping {gt} (--no-quantize)")
                continue
            if not os.path.exists(quantize_bin):
                print(f"[{name}] skipping {gt}: {quantize_bin} not built")
                continue
            f16_path = os.path.join(OUT if args.keep_f16 else work, f"{name}-f16.gguf")
            quantize(quantize_bin, f16_path, path, QUANTIZE_TYPES[gt])
        reader, gg = read_gguf(path)
        arch = gguf_arch(reader)
        types = {k: v[0] for k, v in gg.items()}
        counts = {}
        for t in types.values():
            counts[t] = counts.get(t, 0) + 1
        print(f"[{name}-{gt}] arch={arch} {os.path.getsize(path)} bytes; tensor types: "
              + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        for k in sorted(types):
            print(f"    {k:32s} {types[k]:6s} {list(gg[k][1].shape)}")
        sd, hf_types = to_hf_state_dict(spec, cfg, arch, gg, hf_names)
        assert set(sd) == set(hf_names), (sorted(set(hf_names) ^ set(sd)))
        if "source" in spec:
            # Every tensor is the checkpoint as its GGUF type stores it, bit for bit.
            for k, v in sd.items():
                exp = as_stored(hf_tensors[k], hf_types[k])
                if not torch.equal(v, exp):
                    raise RuntimeError(f"{name}-{gt}: {k} ({hf_types[k]}) differs from the checkpoint stored as "
                                       f"{hf_types[k]} (max {float((v - exp).abs().max()):.3g})")
            kinds = sorted(set(hf_types.values()))
            how = "; Q8_0 = gguf.quants quantize + dequantize of the float32 values" if "Q8_0" in kinds else ""
            notes.append(f"every tensor == the checkpoint stored as its GGUF type ({', '.join(kinds)}{how}), "
                         "bit for bit, after undoing the converter's transforms")
        if gt == "f16":
            # Bit-exact round trip: proves the inverse permutation / transposition / names.
            for k, v in sd.items():
                want = hf_tensors[k]
                assert hf_types[k] in ("F16", "F32"), (k, hf_types[k])
                exp = want.to(torch.float16) if hf_types[k] == "F16" else want
                exp = exp.to(torch.float64)
                if not torch.equal(v, exp):
                    raise RuntimeError(f"{name}-f16: {k} differs from the checkpoint "
                                       f"(max {float((v - exp).abs().max()):.3g})")
            notes.append("F16 file == checkpoint (rounded to f16 where the file has F16), bit for bit, after undoing the converter's transforms")
        else:
            errs = []
            for k, v in sd.items():
                want = hf_tensors[k].to(torch.float64)
                errs.append((float(((v - want) ** 2).mean().sqrt() / (want ** 2).mean().sqrt()), k))
            worst = max(errs)
            notes.append(f"worst tensor relative RMS quantization error {worst[0]:.3g} ({worst[1]})")
        rf = rope_freqs_check(cfg, gg)
        if rf is not None:
            notes.append(f"rope_freqs {rf[0]} {list(rf[1])}: base/rope_freqs vs float64 llama3 rule: max rel diff {rf[2]:.3g}")
            assert rf[2] < 1e-6, rf
        model = load_reference_model(spec, cfg, sd)
        ref, logits, rnotes, lcpp = reference_for(spec, cfg, model, tok, heldout, prompt_ids, greedy_prompts)
        notes += rnotes
        ref["gguf_file"] = os.path.basename(path)
        ref["tensor_types"] = types
        ref_path = os.path.join(dest, f"{name}-{gt}.reference.json")
        with open(ref_path, "w") as f:
            json.dump(ref, f)
            f.write("\n")
        dl = float((logits - orig_logits).abs().max())
        ckpt = str(spec.get("dtype", torch.float32)).replace("torch.float32", "f32").replace("torch.bfloat16", "bf16")
        notes.append(f"max |logits - unquantized {ckpt} checkpoint logits| = {dl:.4g} (logits max |.| {float(orig_logits.abs().max()):.3g})")
        notes.append(f"reference ppl (our protocol) {ref['ppl_perplexity']:.4f}; greedy_prompt {ref['greedy_prompt_ids']} "
                     f"min margin {min(ref['greedy_margins']):.4f}")
        entry = dict(
            file=os.path.basename(path), reference=os.path.basename(ref_path), model=name, gguf_type=gt,
            architecture=arch, bytes=os.path.getsize(path), sha256=sha256(path),
            tensor_type_counts=counts, tensor_types=types,
            made_by=("convert_hf_to_gguf.py --outtype " + CONVERT_TYPES[gt]) if gt in CONVERT_TYPES
            else f"llama-quantize {name}-f16.gguf {QUANTIZE_TYPES[gt]}",
            ppl_perplexity=ref["ppl_perplexity"],
            llama_cpp_protocol_ppl_reference=lcpp[0],
        )
        if "source" in spec:
            entry["source"] = f"tests/fixtures/{spec['source']}"
        entry["versions"] = dict(llama_cpp=args.llama_cpp_version, gguf=mf_version("gguf"),
                                 transformers=mf_version("transformers"), torch=torch.__version__)
        if os.path.exists(ppl_bin) and not args.no_llama_perplexity:
            est, text = llama_perplexity(ppl_bin, path, os.path.join(FIX, "heldout_slice.txt"), spec["n_positions"])
            entry["llama_perplexity_cpu"] = est
            notes.append(f"llama-perplexity (CPU) {est} vs reference on llama.cpp's protocol {lcpp[0]:.4f} "
                         f"({lcpp[1]} chunks): rel diff {abs(est - lcpp[0]) / lcpp[0]:.2e}")
        entry["notes"] = notes
        if kept:
            entries.append(entry)
        else:
            notes.append(f"not kept in tests/fixtures/gguf (see --keep-f16): {path}")
        for n in notes:
            print(f"[{name}-{gt}] {n}")
    manifest[name] = entries


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Generate the GGUF fixtures (see the module docstring).")
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (convert_hf_to_gguf.py, build/bin/)")
    ap.add_argument("--work-dir", default="/tmp/wgpt-gguf-build", help="scratch directory for the f32 checkpoints")
    ap.add_argument("--only", nargs="+", choices=[m["name"] for m in MODELS])
    ap.add_argument("--no-quantize", action="store_true", help="only the convert_hf_to_gguf.py files (f16, q8_0)")
    ap.add_argument("--keep-f16", action="store_true",
                    help="also keep the F16 files (+6.2 MB) and their references in tests/fixtures/gguf "
                         "(by default they stay in --work-dir as llama-quantize's input)")
    ap.add_argument("--llama-cpp-version", default="b11312 (vendored in the llama-cpp-python 0.3.36 sdist)",
                    help="recorded in manifest.json (a source tree without git reports build 0)")
    ap.add_argument("--no-llama-perplexity", action="store_true", help="skip the llama-perplexity cross-check")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.llama_cpp = os.path.abspath(args.llama_cpp)
    mf.quiet_and_seeded()
    os.makedirs(OUT, exist_ok=True)

    tok_path = os.path.join(FIX, "tokenizer.json")
    check_tokenizer_is_gpt2_style(tok_path)
    tok = Tokenizer.from_file(tok_path)
    with open(os.path.join(FIX, "heldout_slice.txt"), "rb") as f:
        heldout = f.read().decode("utf-8")
    eos_id = tok.token_to_id(mf.SPECIAL)
    prompt_ids = mf.fixed_ids(tok, mf.PROMPT_TEXT, mf.PROMPT_LEN, eos_id)
    greedy_prompts = [mf.fixed_ids(tok, t, mf.GREEDY_PROMPT_LEN, eos_id) for t in mf.GREEDY_PROMPT_TEXTS]

    man_path = os.path.join(OUT, "manifest.json")
    manifest, old_top = {}, {}
    if os.path.exists(man_path):
        with open(man_path) as f:
            old_top = json.load(f)
        manifest = old_top.get("models", {})
    specs = [m for m in MODELS if not args.only or m["name"] in args.only]
    for spec in specs:
        build_model(spec, args, tok, tok_path, heldout, eos_id, prompt_ids, greedy_prompts, manifest)

    version = args.llama_cpp_version
    top = dict(generator="tools/make_gguf_fixtures.py", llama_cpp=version,
               gguf_version=mf_version("gguf"), transformers_version=mf_version("transformers"),
               torch_version=torch.__version__)
    if len(specs) < len(MODELS):
        # A partial run: the top-level versions stay those of the files it did not rewrite
        # (each entry written now records its own, see build_model).
        top.update({k: old_top[k] for k in top if k in old_top})
    with open(man_path, "w") as f:
        json.dump(dict(top, models=manifest), f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, fn)) for fn in os.listdir(OUT) if os.path.isfile(os.path.join(OUT, fn)))
    print(f"tests/fixtures/gguf: {total} bytes in files")
    return 0


def mf_version(name):
    from importlib.metadata import version
    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
