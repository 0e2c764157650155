#!/usr/bin/env python3
"""Real-shape, random-weight GGUF files for benchmarking wgpt against llama.cpp.

    python tools/make_bench_gguf.py --llama-cpp /work/llama.cpp                  # all four presets
    python tools/make_bench_gguf.py --llama-cpp DIR --only qwen3-0.6b gemma3-1b
    python tools/make_bench_gguf.py --llama-cpp DIR --no-quantize                # F16 files only
    python tools/make_bench_gguf.py --verify-only                                # print the summary

Writes <out>/<preset>-f16.gguf (convert_hf_to_gguf.py --outtype f16) and
<out>/<preset>-q4_0.gguf (llama-quantize ... Q4_0), default out /work/bench-gguf.  One
preset at a time: the HF checkpoint (float16, shards of at most 2 GB) goes to
<out>/hf/<preset>/ and is deleted once its GGUF files exist (--keep-hf keeps it).  The
directory name becomes general.name ("Phi3 Mini" for phi3-mini: llama.cpp's Phi-3 EOG
handling looks for "phi3" in it).

Presets (the real checkpoints' shapes; config.json keys as on the Hub, given to
transformers' AutoConfig.for_model, which writes them in its own (5.x) layout):

  qwen3-0.6b   qwen3 (Qwen/Qwen3-0.6B): hidden 1024, 28 layers, 16 heads / 8 kv heads of
               128, intermediate 3072, vocab 151936, rope_theta 1e6, tied.
  gemma3-1b    gemma3_text (google/gemma-3-1b-it): hidden 1152, 26 layers, 4 heads / 1 kv
               head of 256, intermediate 6912, vocab 262144, sliding_window 512, pattern 6
               (layers 5, 11, 17, 23 full attention), rope_theta 1e6 / rope_local_base_freq
               1e4, query_pre_attn_scalar 256, tied.
  gemma2-2b    gemma2 (google/gemma-2-2b): hidden 2304, 26 layers, 8 heads / 4 kv heads of
               256, intermediate 9216, vocab 256000, sliding_window 4096 (even layers),
               softcaps 50 / 30, query_pre_attn_scalar 256, tied.
  phi3-mini    phi3 (microsoft/Phi-3.5-mini-instruct): hidden 3072, 32 layers, 32 heads / 32
               kv heads (of 96), intermediate 8192, vocab 32064, 131072 positions, longrope
               (original 4096; the 48 short / long factors are a made-up smooth ramp,
               1.0 -> 1.1 and 1.0 -> 64, not the real ones), sliding_window 262144, untied.

Weights: seeded, drawn directly in float16 (model built on the meta device, then
to_empty): every matrix N(0, 0.02^2); norm weights 1 (Gemma: 0, its RMSNorm scales by
1 + w; the converter adds the 1).  Only the shapes are meant to be real.

Tokenizers: those of the existing tiny fixtures, copied unchanged (tokenizer.json,
tokenizer_config.json, tokenizer.model, generation_config.json), with the fixtures'
bos / eos / pad ids in config.json: tiny-qwen3-bf16 (384-token byte-level BPE + Qwen3's
special tokens), tiny-gemma3-bf16 / tiny-gemma2-f32 (512-piece Gemma-layout
SentencePiece), tiny-phi3-f32 (512-piece SentencePiece + Phi-3's 11 added tokens at
512..522).  The converter pads the token list to vocab_size with [PADn] tokens, so
token_embd has the real shape.  Conversion goes through make_gguf_fixtures.convert (its
wrapper maps the unknown BPE pre-tokenizer hash of the Qwen3 tokenizer to "gpt-2").
"""

import argparse
import gc
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gguf_fixtures as mgf  # noqa: E402  (convert / quantize helpers)

import gguf  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

FIX = mgf.FIX
STD = 0.02


def _ramp(lo, hi, n=48, geometric=False):
    if geometric:
        return [round(lo * (hi / lo) ** (i / (n - 1)), 4) for i in range(n)]
    return [round(lo + (hi - lo) * i / (n - 1), 4) for i in range(n)]


PRESETS = {
    "qwen3-0.6b": dict(
        seed=7001, fixture="tiny-qwen3-bf16", model_type="qwen3", gemma_norm=False,
        config=dict(
            architectures=["Qwen3ForCausalLM"], attention_bias=False, attention_dropout=0.0,
            head_dim=128, hidden_act="silu", hidden_size=1024, initializer_range=0.02,
            intermediate_size=3072, max_position_embeddings=40960, max_window_layers=28,
            num_attention_heads=16, num_hidden_layers=28, num_key_value_heads=8,
            rms_norm_eps=1e-6, rope_scaling=None, rope_theta=1000000, sliding_window=None,
            tie_word_embeddings=True, use_cache=True, use_sliding_window=False, vocab_size=151936,
        ),
    ),
    "gemma3-1b": dict(
        seed=7002, fixture="tiny-gemma3-bf16", model_type="gemma3_text", gemma_norm=True,
        config=dict(
            architectures=["Gemma3ForCausalLM"], attention_bias=False, attention_dropout=0.0,
            attn_logit_softcapping=None, cache_implementation="hybrid",
            final_logit_softcapping=None, head_dim=256, hidden_activation="gelu_pytorch_tanh",
            hidden_size=1152, initializer_range=0.02, intermediate_size=6912,
            max_position_embeddings=32768, num_attention_heads=4, num_hidden_layers=26,
            num_key_value_heads=1, query_pre_attn_scalar=256, rms_norm_eps=1e-6,
            rope_local_base_freq=10000, rope_scaling=None, rope_theta=1000000,
            sliding_window=512, sliding_window_pattern=6,
            layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)],
            tie_word_embeddings=True, use_cache=True, vocab_size=262144,
        ),
    ),
    "gemma2-2b": dict(
        seed=7003, fixture="tiny-gemma2-f32", model_type="gemma2", gemma_norm=True,
        config=dict(
            architectures=["Gemma2ForCausalLM"], attention_bias=False, attention_dropout=0.0,
            attn_logit_softcapping=50.0, cache_implementation="hybrid",
            final_logit_softcapping=30.0, head_dim=256, hidden_act="gelu_pytorch_tanh",
            hidden_activation="gelu_pytorch_tanh", hidden_size=2304, initializer_range=0.02,
            intermediate_size=9216, max_position_embeddings=8192, num_attention_heads=8,
            num_hidden_layers=26, num_key_value_heads=4, query_pre_attn_scalar=256,
            rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=4096,
            tie_word_embeddings=True, use_cache=True, vocab_size=256000,
        ),
    ),
    "phi3-mini": dict(
        seed=7004, fixture="tiny-phi3-f32", model_type="phi3", gemma_norm=False,
        config=dict(
            architectures=["Phi3ForCausalLM"], attention_bias=False, attention_dropout=0.0,
            embd_pdrop=0.0, hidden_act="silu", hidden_size=3072, initializer_range=0.02,
            intermediate_size=8192, max_position_embeddings=131072, num_attention_heads=32,
            num_hidden_layers=32, num_key_value_heads=32, original_max_position_embeddings=4096,
            resid_pdrop=0.0, rms_norm_eps=1e-5,
            rope_scaling=dict(type="longrope", short_factor=_ramp(1.0, 1.1),
                              long_factor=_ramp(1.0, 64.0, geometric=True)),
            rope_theta=10000.0, sliding_window=262144, tie_word_embeddings=False,
            use_cache=True, vocab_size=32064,
        ),
    ),
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", "generation_config.json"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_config(p):
    with open(os.path.join(FIX, p["fixture"], "config.json"), encoding="utf-8") as f:
        fx = json.load(f)
    keys = dict(p["config"])
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        keys[k] = fx.get(k)
    return AutoConfig.for_model(p["model_type"], **keys)


def build_hf(name, p, hf_dir):
    cfg = make_config(p)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float16)
    model.to_empty(device="cpu")  # unties lm_head: tied again below
    gen = torch.Generator().manual_seed(p["seed"])
    with torch.no_grad():
        for pname, prm in model.named_parameters():
            if prm.dim() >= 2:
                prm.normal_(0.0, STD, generator=gen)
            else:
                prm.fill_(0.0 if p["gemma_norm"] else 1.0)
    if cfg.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight is model.get_input_embeddings().weight
    n = sum(x.numel() for x in model.parameters())
    log(f"{name}: {type(model).__name__}, {n / 1e9:.3f} B parameters, float16")
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    os.makedirs(hf_dir)
    model.save_pretrained(hf_dir, max_shard_size="2GB")
    del model
    gc.collect()
    for fn in TOKENIZER_FILES:
        src = os.path.join(FIX, p["fixture"], fn)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(hf_dir, fn))
    log(f"{name}: saved {hf_dir} ({sorted(os.listdir(hf_dir))})")


def wait_for(path, timeout):
    t0 = time.time()
    while not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if time.time() - t0 > timeout:
            raise SystemExit(f"{path} did not appear within {timeout} s")
        log(f"waiting for {path} ...")
        time.sleep(60)


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    v = f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]
    return v


def summarize(path):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    types = {}
    for t in r.tensors:
        tn = gguf.GGMLQuantizationType(t.tensor_type).name
        types[tn] = types.get(tn, 0) + 1
    te = next(t for t in r.tensors if t.name == "token_embd.weight")
    out = [t for t in r.tensors if t.name == "output.weight"]
    size = os.path.getsize(path)
    s = (f"{os.path.basename(path)}: arch {arch}, name {field(r, 'general.name')!r}, "
         f"block_count {field(r, f'{arch}.block_count')}, embd {field(r, f'{arch}.embedding_length')}, "
         f"heads {field(r, f'{arch}.attention.head_count')}/{field(r, f'{arch}.attention.head_count_kv')}, "
         f"ctx {field(r, f'{arch}.context_length')}, {len(r.tensors)} tensors {types}, "
         f"token_embd {[int(x) for x in te.shape]} {gguf.GGMLQuantizationType(te.tensor_type).name}, "
         f"output {'%s %s' % ([int(x) for x in out[0].shape], gguf.GGMLQuantizationType(out[0].tensor_type).name) if out else 'tied (none)'}, "
         f"n_tokens {len(r.fields['tokenizer.ggml.tokens'].data)}, "
         f"{size} bytes ({size / 2**30:.2f} GiB)")
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default="/work/llama.cpp", help="llama.cpp source tree (convert_hf_to_gguf.py)")
    ap.add_argument("--quantize-bin", default=None, help="llama-quantize (default <llama-cpp>/build/bin/llama-quantize)")
    ap.add_argument("--out", default="/work/bench-gguf")
    ap.add_argument("--only", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    ap.add_argument("--no-quantize", action="store_true")
    ap.add_argument("--keep-hf", action="store_true")
    ap.add_argument("--skip-existing", action="store_true", help="skip a step whose output file exists")
    ap.add_argument("--wait-quantize", type=int, default=3 * 3600,
                    help="seconds to wait for llama-quantize to appear (polled every minute)")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args(argv)
    hf_logging.set_verbosity_error()
    qbin = args.quantize_bin or os.path.join(args.llama_cpp, "build", "bin", "llama-quantize")
    os.makedirs(args.out, exist_ok=True)
    for name in args.only:
        p = PRESETS[name]
        f16 = os.path.join(args.out, f"{name}-f16.gguf")
        q4 = os.path.join(args.out, f"{name}-q4_0.gguf")
        hf_dir = os.path.join(args.out, "hf", name)
        if not args.verify_only:
            if not (args.skip_existing and os.path.isfile(f16)):
                build_hf(name, p, hf_dir)
                log(f"{name}: converting")
                for note in mgf.convert(args.llama_cpp, hf_dir, f16, "f16"):
                    log(f"{name}: {note}")
                if not args.keep_hf:
                    shutil.rmtree(hf_dir)
            if not args.no_quantize and not (args.skip_existing and os.path.isfile(q4)):
                wait_for(qbin, args.wait_quantize)
                log(f"{name}: quantizing")
                mgf.quantize(qbin, f16, q4, "Q4_0")
        for path in (f16, q4):
            if os.path.isfile(path):
                print(summarize(path), flush=True)
    hf_root = os.path.join(args.out, "hf")
    if os.path.isdir(hf_root) and not os.listdir(hf_root):
        os.rmdir(hf_root)


if __name__ == "__main__":
    main()
