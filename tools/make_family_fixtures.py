#!/usr/bin/env python3
"""Golden fixtures for two more model families laid out as the Hub ships them: a Qwen3
checkpoint (per-head q/k RMSNorm, head_dim != hidden / heads) and a Phi-3 checkpoint (fused
qkv / gate_up weights, partial rotary, LongRoPE with short and long factors), each with a
float64 HF reference, a GGUF made by llama.cpp's own converter and that GGUF's reference.

Run from the repository root (needs the packages in tools/requirements.txt and a llama.cpp
source tree for convert_hf_to_gguf.py + gguf-py; no llama.cpp build):

    python tools/make_family_fixtures.py --llama-cpp /work/llama.cpp
    python tools/make_family_fixtures.py --llama-cpp DIR --only qwen3      # or phi3

Deterministic (fixed seeds, one torch thread; two runs give identical files).  Reuses
tools/make_fixtures.py (float64 helpers, greedy prompt choice), tools/make_gguf_fixtures.py
(the converter wrapper with the pre-tokenizer fallback, GGUF reading) and
tools/make_real_fixtures.py (BOS perplexity protocol, SentencePiece byte rule, JSON writers).
Reads tests/fixtures/tokenizer.json, tests/fixtures/heldout_slice.txt,
tests/fixtures/tiny-sp-llama-f32/{tokenizer.model, tokenizer.json, tokenizer_config.json},
tests/fixtures/chat/qwen3.jinja (only if it exists) and, from the llama.cpp tree,
models/templates/microsoft-Phi-3.5-mini-instruct.jinja.  Scratch files go to --work-dir.
Writes only these files (and the two entries "tiny-qwen3" / "tiny-phi3" of
tests/fixtures/gguf/manifest.json, whose other entries and top-level versions stay as they are):

tests/fixtures/tiny-qwen3-bf16/  (Qwen/Qwen3-0.6B layout, tiny sizes)
    config.json   exactly as transformers 5's save_pretrained writes it for a Qwen3Config with
                  Qwen3-0.6B's values: attention_bias false, max_position_embeddings 40960,
                  max_window_layers = num_hidden_layers, rms_norm_eps 1e-6, rope_theta 1000000
                  (written as "rope_parameters": {"rope_theta": 1000000, "rope_type":
                  "default"}; the Hub's file has top-level rope_theta + rope_scaling null),
                  sliding_window null, use_sliding_window false, tie_word_embeddings true,
                  bos_token_id 0 (<|endoftext|>, as Qwen3's 151643), eos_token_id 385
                  (<|im_end|>, as 151645), hidden 64, 4 heads / 2 key-value heads, head_dim 32
                  (TRAP: 4 x 32 = 128 != hidden 64, so q_proj is [128, 64] and o_proj [64,
                  128]), 2 layers, intermediate 136, vocab_size 389, dtype bfloat16
                  (+ layer_types, pad_token_id null, which transformers 5 adds).
    generation_config.json  Qwen3-0.6B's: bos 0, do_sample true, eos [385, 0], pad 0,
                  temperature 0.6, top_k 20, top_p 0.95, transformers_version "4.51.0".
    model.safetensors  bf16, random weights (seeded), tied head (no lm_head.weight); each
                  layer has self_attn.q_norm.weight / k_norm.weight [32] = 1 + 0.3 N(0, 1)
                  (so the per-head norms matter), other norms 1 + 0.1 N, linear N(0, 0.15^2),
                  embeddings N(0, 0.4^2) (make_fixtures' scales).
    tokenizer.json  tests/fixtures/tokenizer.json (384-token byte-level BPE, GPT-2 regex,
                  <|endoftext|> = 0) + <|im_start|> 384, <|im_end|> 385 (special, as
                  tiny-qwen2-bf16) + <think> 386, </think> 387 (added tokens with special
                  FALSE, as in Qwen3's tokenizer: they survive skip_special_tokens).  No
                  post-processor (no BOS, as Qwen3's ByteLevel post-processor adds none).
    tokenizer_config.json  Qwen3-0.6B's keys: add_bos_token false, add_prefix_space false,
                  added_tokens_decoder, additional_special_tokens [<|im_start|>, <|im_end|>],
                  bos_token null, clean_up_tokenization_spaces false, eos_token <|im_end|>,
                  errors replace, model_max_length 131072, pad_token <|endoftext|>,
                  split_special_tokens false, unk_token null, chat_template =
                  tests/fixtures/chat/qwen3.jinja if that file exists when the script runs
                  (else no chat_template key).  TRAP: tokenizer_class is
                  "PreTrainedTokenizerFast", not Qwen3's "Qwen2Tokenizer": transformers 5's
                  Qwen2Tokenizer ignores tokenizer.json's normalizer / pre-tokenizer and
                  rebuilds Qwen2's (NFC + its digit-splitting regex), which is not the regex
                  our merges were trained with (the script prints both).
    reference.json  see below; bos_token_id null and the perplexity protocol WITHOUT a BOS.
tests/fixtures/gguf/tiny-qwen3-f16.gguf (+ .reference.json)
    convert_hf_to_gguf.py tiny-qwen3-f16/ --outtype f16 (a copy of tiny-qwen3-bf16 named like
    the file; the BPE pre-tokenizer hash is unknown, so it runs with make_gguf_fixtures'
    "gpt-2" fallback).  Norms (incl. attn_q_norm / attn_k_norm [32]) stay F32; attn_q is
    [128 rows, 64], attn_output [64 rows, 128]; qwen3.attention.key_length / value_length 32
    carry the head_dim; <think> / </think> are USER_DEFINED (4), <|im_start|> / <|im_end|>
    CONTROL (3); bos 0, eos 385, add_bos_token false.  The bf16 -> f16 conversion rounds a few
    tiny (f16-subnormal) weights: logits move by 1.5e-7 from the bf16 reference.
tests/fixtures/gguf/tiny-qwen3-hf/  config.json, generation_config.json, tokenizer.json,
    tokenizer_config.json of tiny-qwen3-bf16 (tests/gguf.rs's hf_dir()).

tests/fixtures/tiny-phi3-f32/  (microsoft/Phi-3.5-mini-instruct layout, tiny sizes)
    config.json   exactly as transformers 5's save_pretrained writes a Phi3Config built with
                  Phi-3.5-mini-instruct's keys and values (rope_scaling {"type": "longrope",
                  long_factor, short_factor}, original_max_position_embeddings, bos 1,
                  eos_token_id single (512 = <|endoftext|>, as 32000), pad_token_id 512,
                  sliding_window 262144 (the Hub's value), tie_word_embeddings false,
                  attention_bias false, rms_norm_eps 1e-5, rope_theta 10000) plus Phi-4-mini's
                  partial_rotary_factor 0.75.  transformers 5 writes "rope_parameters"
                  {long_factor, original_max_position_embeddings 32, partial_rotary_factor
                  0.75, rope_theta 10000.0, rope_type "longrope", short_factor, type
                  "longrope"} AND keeps top-level original_max_position_embeddings 32 and
                  partial_rotary_factor 0.75.  hidden 64, 4 heads / 2 key-value heads (GQA),
                  head_dim 16 (not written: hidden / heads), rotary on 12 of 16 dims (factor
                  lists of 6), 2 layers, intermediate 136, max_position_embeddings 128
                  (original 32, so HF's / llama.cpp's attention factor is sqrt(1 + ln(128/32)
                  / ln(32)) = 1.1832), vocab_size 528, dtype float32.
                  short_factor = SHORT_FACTOR, long_factor = LONG_FACTOR below.
    generation_config.json  Phi-3.5-mini-instruct's: _from_model_config true, bos 1, eos
                  [519, 513, 512] (<|end|>, <|assistant|>, <|endoftext|> = 32007, 32001,
                  32000), pad 512, transformers_version "4.43.3".
    model.safetensors  f32, random weights (seeded), untied lm_head; fused as Phi3ForCausalLM
                  saves them (as on the Hub): self_attn.qkv_proj.weight [128, 64] (rows q 64 |
                  k 32 | v 32) and mlp.gate_up_proj.weight [272, 64] (rows gate 136 | up 136).
    tokenizer.model  tiny-sp-llama-f32's (SentencePiece BPE, 512 pieces, <unk> 0 <s> 1 </s> 2).
    tokenizer.json  tiny-sp-llama-f32's + Phi-3's eleven added tokens in Phi-3's order as ids
                  512..522: <|endoftext|> 512, <|assistant|> 513, <|placeholder1|>..4 514..517,
                  <|system|> 518, <|end|> 519, <|placeholder5|> 520, <|placeholder6|> 521,
                  <|user|> 522, all special, all rstrip TRUE except <|endoftext|> (as
                  Phi-3's: "<|user|>\nHi" loses its "\n" when encoded).  Rows 523..527 are
                  padding (as Phi-3's 32011..32063).
    tokenizer_config.json  Phi-3.5-mini-instruct's keys: add_bos_token (TRUE here: the real
                  file says false), add_eos_token false, added_tokens_decoder, bos <s>,
                  chat_template (llama.cpp's models/templates copy of Phi-3.5-mini-instruct's),
                  clean_up_tokenization_spaces false, eos_token <|endoftext|>, legacy (TRUE here:
                  the real file says false, and transformers 5 then rebuilds the Metaspace
                  pre-tokenizer with prepend_scheme "first", ignoring tokenizer.json),
                  model_max_length 128, pad_token <|endoftext|>, padding_side left,
                  sp_model_kwargs {}, tokenizer_class LlamaTokenizer, unk_token <unk>,
                  use_default_system_prompt false.
    reference.json  see below, plus "rope_factors": {"logits": "short", "ppl": "long"}.
tests/fixtures/gguf/tiny-phi3-f32.gguf (+ .reference.json)
    convert_hf_to_gguf.py tiny-phi3-f32/ --outtype f32: tokenizer.ggml.model "llama".  The
    converter keeps qkv and gate_up fused (blk.N.attn_qkv, blk.N.ffn_up [272 rows]), writes
    rope_factors_long / rope_factors_short as F32 [6] tensors, the attention factor as
    phi3.rope.scaling.attn_factor, rope.dimension_count 12 and
    rope.scaling.original_context_length 32, phi3.attention.sliding_window 262144.  The F32 file
    equals the checkpoint exactly, so its reference equals tiny-phi3-f32/reference.json
    (checked).  TRAPS in the file: the converter types every added_tokens_decoder entry
    CONTROL (3) with score -1000, <unk> 0 / <s> 1 / </s> 2 included (the sp-llama GGUF has
    <unk> UNKNOWN); the GGUF has no rstrip flags: llama.cpp sets RSTRIP on the control tokens
    (</s> too; not <unk>, <s>, <|endoftext|>) only because general.name ("Tiny Phi3 F32")
    contains "phi3" / "phi-3" (llama-vocab.cpp), which is what tokenizer.json's rstrip does.
tests/fixtures/gguf/tiny-phi3-hf/  config.json, generation_config.json, tokenizer.json,
    tokenizer_config.json, tokenizer.model of tiny-phi3-f32.

reference.json (the GGUF references: the same plus gguf_file and tensor_types) has the keys
of tools/make_real_fixtures.py's:
    prompt_text / prompt_ids   PROMPT_TEXT encoded WITH special tokens (Phi-3: BOS first;
                               Qwen3: no BOS, the raw ids); logits for every position
    greedy_prompt_text / _ids  the first of make_fixtures' GREEDY_PROMPT_TEXTS whose 12
                               greedy steps have margin >= 0.1 (make_fixtures: 0.05) and
                               >= 3 distinct ids (with the BOS where the tokenizer adds it)
    greedy_ids, greedy_margins 12 argmax steps (full recompute; cross-checked with generate())
    bos_token_id               1 (Phi-3); null (Qwen3: its tokenizer adds no BOS)
    ppl_*, ppl_bytes_rule      heldout_slice.txt encoded WITHOUT special tokens.  Phi-3: the
                               BOS protocol (chunks of ppl_context - 1 = 47 ids, each window
                               [BOS] + chunk, every text token scored).  Qwen3: windows of
                               ppl_context = 64 ids, each token after the first of its window
                               scored (make_fixtures' protocol).  Bytes: Qwen3 the byte-level
                               rule (= UTF-8 bytes), Phi-3 the SentencePiece rule.
    rope_factors (Phi-3 only)  {"logits": "short", "ppl": "long"}: see LongRoPE below.
All float64 (model.double(), eager attention, and while computing: softmax, RMSNorm (incl.
Qwen3's q_norm / k_norm), rotary angles and cos/sin patched to float64 (transformers 5 does
them in float32 even in a float64 model), checked against a hand-written float64 forward
(< 1e-10): Qwen3 = RMSNorm per head on q and k after the projection, before the rotary;
Phi-3 = split of the fused qkv / gate_up, rotate-half on the first 12 dims only, inv_freq_i =
1 / (factor_i * 10000^(2i/12)), cos and sin multiplied by the attention factor.

LongRoPE (Phi-3): transformers 5 (dynamic_rope_update -> longrope_frequency_update) uses the
SHORT factors when a forward's max position + 1 <= original_max_position_embeddings (32) and
the LONG factors beyond, for all positions of that forward; the attention factor always.
llama.cpp (and wgpt) use the long factors iff the context n_ctx > 32.  So: prompt logits and
greedy (every forward <= 30 tokens: checked) are HF's with the short factors; perplexity
(ppl_context 48) uses the long factors for EVERY window: for a full 48-token window that is
what HF does (checked: the buffer HF leaves in rotary_emb.inv_freq after an unpatched forward
is its long one, and the unpatched float32-rope logits agree with the patched float64 long
ones to float32 precision), while for the last, shorter window (<= 32 tokens) HF would pick
the short factors; the reference forces the long ones there (llama.cpp's rule for n_ctx 48);
the script prints what HF's own rule would give.

GGUF references: every tensor of the GGUF read back (gguf.quants.dequantize), names mapped
back with gguf's tensor name map (nothing else to undo: no q/k permutation for Qwen3 /
Phi-3, fused tensors stay fused), loaded into the model built from the fixture's config.json;
the F16 file must equal the bf16 checkpoint rounded to f16 bit for bit, the F32 file the f32
checkpoint exactly; rope_factors_long / _short must equal the config's lists in float32.
"""

import argparse
import json
import math
import os
import shutil
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (float64 helpers, greedy prompt choice)
import make_gguf_fixtures as mgf  # noqa: E402  (converter wrapper, GGUF reading)
import make_real_fixtures as mrf  # noqa: E402  (BOS protocol, SentencePiece byte rule, writers)

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from tokenizers import AddedToken, Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoTokenizer,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.models.phi3 import modeling_phi3  # noqa: E402
from transformers.models.qwen3 import modeling_qwen3  # noqa: E402

FIX = mf.FIX
GGUF_OUT = os.path.join(FIX, "gguf")
HELDOUT = os.path.join(FIX, "heldout_slice.txt")
SP_SRC = os.path.join(FIX, "tiny-sp-llama-f32")
QWEN3_TEMPLATE = os.path.join(FIX, "chat", "qwen3.jinja")
PHI35_TEMPLATE = os.path.join(FIX, "chat", "phi3.5.jinja")
PHI35_TEMPLATE_LLAMA_CPP = os.path.join("models", "templates", "microsoft-Phi-3.5-mini-instruct.jinja")

PROMPT_TEXT = mrf.PROMPT_TEXT  # "ROMEO:\nBut soft, what light"
STD_QK_NORM = 0.3
# Greedy prompts: make_fixtures' candidates and rule, with a larger smallest margin (0.1
# instead of 0.05) so that the f32 / f16 paths of the Rust side cannot flip an argmax.
GREEDY_MIN_MARGIN = 0.1

# Distinct per-frequency factors: short 1.0..1.5, long 1..8 increasing.
SHORT_FACTOR = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
LONG_FACTOR = [1.0, 1.5, 2.25, 3.5, 5.25, 8.0]

QWEN3 = dict(
    name="tiny-qwen3-bf16", gguf_name="tiny-qwen3-f16", gguf_outtype="f16", model="tiny-qwen3",
    family="qwen3", seed=3301, hidden_size=64, n_head=4, n_kv_head=2, head_dim=32,
    intermediate_size=136, n_layer=2, rms_norm_eps=1e-6, n_positions=40960, rope_theta=1000000,
    dtype=torch.bfloat16, tie=True, ppl_context=64, arch="qwen3",
)
PHI3 = dict(
    name="tiny-phi3-f32", gguf_name="tiny-phi3-f32", gguf_outtype="f32", model="tiny-phi3",
    family="phi3", seed=3302, hidden_size=64, n_head=4, n_kv_head=2, head_dim=16,
    intermediate_size=136, n_layer=2, rms_norm_eps=1e-5, n_positions=128, original_ctx=32,
    partial_rotary_factor=0.75, rope_theta=10000.0, dtype=torch.float32, tie=False,
    ppl_context=48, vocab_size=528, sliding_window=262144, arch="phi3",
)

QWEN3_SPECIALS = ["<|im_start|>", "<|im_end|>"]  # special: true
QWEN3_THINK = ["<think>", "</think>"]  # added, special: false (as Qwen3's)
PHI3_ADDED = [  # Phi-3's ids 32000..32010, in order
    "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
    "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
]


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------
@torch.no_grad()
def init_weights(model, seed):
    """make_fixtures' Llama-family scales; Qwen3's q_norm / k_norm 1 + 0.3 N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        leaf = name.split(".")[-2]
        if leaf in ("q_norm", "k_norm"):
            std, mean = STD_QK_NORM, 1.0
        else:
            std, mean = mf.init_std_mean("llama", name)
        vals = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean
        p.copy_(vals.to(p.dtype))


def save_checkpoint(model, out_dir):
    mf.save_hf(model, out_dir, {})
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------
# float64: patches and hand-written forwards
# ---------------------------------------------------------------------------
def qwen3_inv_freq_f64(cfg):
    d = cfg.head_dim
    return 1.0 / (float(cfg.rope_parameters["rope_theta"]) ** (torch.arange(0, d, 2, dtype=torch.float64) / d))


def phi3_rotary(cfg):
    """(rotary dims, short inv_freq, long inv_freq, attention factor), float64."""
    rp = cfg.rope_parameters
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rot = int(head_dim * rp["partial_rotary_factor"])
    base = float(rp["rope_theta"])
    expo = torch.arange(0, rot, 2, dtype=torch.float64) / rot
    short = 1.0 / (torch.tensor(rp["short_factor"], dtype=torch.float64) * base ** expo)
    long = 1.0 / (torch.tensor(rp["long_factor"], dtype=torch.float64) * base ** expo)
    orig = rp["original_max_position_embeddings"]
    scale = cfg.max_position_embeddings / orig
    attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0
    return rot, short, long, attn


def _phi3_rope_forward_f64(self, x, position_ids):
    """Phi3RotaryEmbedding.forward (with its dynamic_rope_update) in float64: the long factors
    when max(position_ids) + 1 > original_max_position_embeddings, else the short ones (or
    those of self.f64_force); cos and sin times the attention factor."""
    assert x.dtype == torch.float64
    seq_len = int(position_ids.max()) + 1
    which = self.f64_force or ("long" if seq_len > self.f64_orig else "short")
    inv = self.f64_long if which == "long" else self.f64_short
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    self.f64_calls.append((seq_len, which))
    return emb.cos() * self.f64_attn, emb.sin() * self.f64_attn


class Float64Exact:
    """Context manager: Qwen3 / Phi-3 eager attention softmax, RMSNorm (incl. q_norm / k_norm)
    and rotary in float64 (transformers 5 does them in float32).  `force` ("long" / "short")
    overrides Phi-3's LongRoPE choice."""

    def __init__(self, model):
        assert next(model.parameters()).dtype == torch.float64
        self.model = model
        self.rope = model.model.rotary_emb

    def __enter__(self):
        self.saved = [(m, m.eager_attention_forward) for m in (modeling_qwen3, modeling_phi3)]
        for m, _ in self.saved:
            m.eager_attention_forward = mf._eager_attention_f64
        norm_types = (modeling_qwen3.Qwen3RMSNorm, modeling_phi3.Phi3RMSNorm)
        self.norms = [m for m in self.model.modules() if isinstance(m, norm_types)]
        for m in self.norms:
            m.forward = types.MethodType(mf._rmsnorm_forward_f64, m)
        cfg = self.model.config
        r = self.rope
        if isinstance(r, modeling_qwen3.Qwen3RotaryEmbedding):
            assert r.rope_type == "default" and r.attention_scaling == 1.0
            self.saved_inv = (r.inv_freq, r.original_inv_freq)
            inv = qwen3_inv_freq_f64(cfg)
            assert inv.shape == r.inv_freq.shape
            r.inv_freq, r.original_inv_freq = inv, inv.clone()
            r.forward = types.MethodType(mf._rope_forward_f64, r)
        else:
            assert isinstance(r, modeling_phi3.Phi3RotaryEmbedding) and r.rope_type == "longrope"
            _, short, long, attn = phi3_rotary(cfg)
            assert short.shape == r.inv_freq.shape
            assert attn == r.attention_scaling, (attn, r.attention_scaling)
            r.f64_short, r.f64_long, r.f64_attn = short, long, attn
            r.f64_orig = cfg.rope_parameters["original_max_position_embeddings"]
            r.f64_force, r.f64_calls = None, []
            r.forward = types.MethodType(_phi3_rope_forward_f64, r)
        return self

    def force(self, which):
        self.rope.f64_force = which

    def __exit__(self, *exc):
        for m, fn in self.saved:
            m.eager_attention_forward = fn
        for m in self.norms:
            del m.forward
        r = self.rope
        if isinstance(r, modeling_qwen3.Qwen3RotaryEmbedding):
            r.inv_freq, r.original_inv_freq = self.saved_inv
        del r.forward
        return False


def _rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _silu(x):
    return x / (1 + torch.exp(-x))


@torch.no_grad()
def handwritten_qwen3(cfg, sd, ids):
    """Qwen3 in float64 from the state dict: pre-RMSNorm blocks; q = RMSNorm_head(x Wq^T)
    per head of head_dim (weight q_norm), k likewise (k_norm), then rotate-half rotary
    (pairs i, i + d/2) over the whole head, grouped-query attention (scale d^-0.5), o_proj;
    gated SiLU MLP; final RMSNorm; tied head."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    g = lambda n: sd["model." + n]  # noqa: E731
    ids = torch.tensor(ids, dtype=torch.long)
    T, H, KV, d, eps = len(ids), cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps
    theta = float(cfg.rope_parameters["rope_theta"])
    inv = torch.tensor([theta ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()

    def rope(t):  # (heads, T, d)
        a, b = t[..., : d // 2], t[..., d // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    x = g("embed_tokens.weight")[ids]
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        h = _rms(x, g(p + "input_layernorm.weight"), eps)
        q = (h @ g(p + "self_attn.q_proj.weight").T).reshape(T, H, d)
        k = (h @ g(p + "self_attn.k_proj.weight").T).reshape(T, KV, d)
        v = (h @ g(p + "self_attn.v_proj.weight").T).reshape(T, KV, d)
        q = _rms(q, g(p + "self_attn.q_norm.weight"), eps).transpose(0, 1)
        k = _rms(k, g(p + "self_attn.k_norm.weight"), eps).transpose(0, 1)
        v = v.transpose(0, 1)
        kv_of = torch.tensor([j // (H // KV) for j in range(H)])
        a = mf._causal_softmax_attn(rope(q), rope(k)[kv_of], v[kv_of], d ** -0.5)
        x = x + a @ g(p + "self_attn.o_proj.weight").T
        h = _rms(x, g(p + "post_attention_layernorm.weight"), eps)
        m = _silu(h @ g(p + "mlp.gate_proj.weight").T) * (h @ g(p + "mlp.up_proj.weight").T)
        x = x + m @ g(p + "mlp.down_proj.weight").T
    x = _rms(x, g("norm.weight"), eps)
    head = g("embed_tokens.weight") if cfg.tie_word_embeddings else sd["lm_head.weight"]
    return x @ head.T


@torch.no_grad()
def handwritten_phi3(cfg, sd, ids, factors):
    """Phi-3 in float64 from the state dict: pre-RMSNorm blocks; the fused qkv_proj rows split
    q (H*d) | k (KV*d) | v (KV*d); rotary on the first `rot` dims of each head only,
    rotate-half pairs (i, i + rot/2), inv_freq_i = 1 / (factor_i * theta^(2i/rot)) with the
    `factors` list ("short" / "long"), cos and sin times the attention factor; grouped-query
    attention (scale d^-0.5); the fused gate_up_proj rows split gate | up, down(up * silu(gate));
    final RMSNorm; untied lm_head."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    g = lambda n: sd["model." + n]  # noqa: E731
    ids = torch.tensor(ids, dtype=torch.long)
    T, H, KV, eps = len(ids), cfg.num_attention_heads, cfg.num_key_value_heads, cfg.rms_norm_eps
    D, I = cfg.hidden_size, cfg.intermediate_size
    d = D // H
    rp = cfg.rope_parameters
    rot = int(d * rp["partial_rotary_factor"])
    fac = rp["short_factor"] if factors == "short" else rp["long_factor"]
    theta = float(rp["rope_theta"])
    inv = torch.tensor([1.0 / (fac[i] * theta ** (2 * i / rot)) for i in range(rot // 2)], dtype=torch.float64)
    orig = rp["original_max_position_embeddings"]
    af = math.sqrt(1 + math.log(cfg.max_position_embeddings / orig) / math.log(orig))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos() * af, ang.sin() * af

    def rope(t):  # (heads, T, d): only the first rot dims
        a, b, rest = t[..., : rot // 2], t[..., rot // 2: rot], t[..., rot:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], -1)

    x = g("embed_tokens.weight")[ids]
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        h = _rms(x, g(p + "input_layernorm.weight"), eps)
        qkv = h @ g(p + "self_attn.qkv_proj.weight").T
        q = qkv[:, : H * d].reshape(T, H, d).transpose(0, 1)
        k = qkv[:, H * d: H * d + KV * d].reshape(T, KV, d).transpose(0, 1)
        v = qkv[:, H * d + KV * d:].reshape(T, KV, d).transpose(0, 1)
        kv_of = torch.tensor([j // (H // KV) for j in range(H)])
        a = mf._causal_softmax_attn(rope(q), rope(k)[kv_of], v[kv_of], d ** -0.5)
        x = x + a @ g(p + "self_attn.o_proj.weight").T
        h = _rms(x, g(p + "post_attention_layernorm.weight"), eps)
        gu = h @ g(p + "mlp.gate_up_proj.weight").T
        x = x + (gu[:, I:] * _silu(gu[:, :I])) @ g(p + "mlp.down_proj.weight").T
    x = _rms(x, g("norm.weight"), eps)
    return x @ sd["lm_head.weight"].T


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------
@torch.no_grad()
def plain_perplexity(model, ids, token_nbytes, ctx):
    """make_fixtures' protocol (no BOS): windows of ctx ids, each id after the first of its
    window scored; a last window of < 2 ids dropped."""
    windows = [ids[i:i + ctx] for i in range(0, len(ids), ctx)]
    windows = [w for w in windows if len(w) >= 2]
    per = []
    for w in windows:
        logp = torch.log_softmax(mf.logits_for(model, w), dim=-1)
        tgt = torch.tensor(w[1:], dtype=torch.long)
        nll = -logp[:-1].gather(1, tgt[:, None])[:, 0]
        per.append((math.fsum(nll.tolist()), len(w) - 1, sum(token_nbytes(t) for t in w[1:])))
    total = math.fsum(p[0] for p in per)
    n = sum(p[1] for p in per)
    nbytes = sum(p[2] for p in per)
    c2, c2n = math.fsum(p[0] for p in per[:2]), sum(p[1] for p in per[:2])
    return {
        "ppl_context": ctx,
        "ppl_tokens_scored": n,
        "ppl_nll_mean": total / n,
        "ppl_perplexity": math.exp(total / n),
        "ppl_bits_per_byte": (total / math.log(2.0)) / nbytes,
        "ppl_chunks2_nll_mean": c2 / c2n,
        "ppl_chunks2_tokens_scored": c2n,
    }, len(windows), nbytes


def hand_logits(spec, model, ids, factors=None):
    sd = dict(model.state_dict())
    if spec["family"] == "qwen3":
        return handwritten_qwen3(model.config, sd, ids)
    return handwritten_phi3(model.config, sd, ids, factors)


def compute_reference(spec, model, hf_tok, heldout, bos_id, token_nbytes, bytes_rule, notes):
    enc = lambda t, special: hf_tok(t, add_special_tokens=special)["input_ids"]  # noqa: E731
    phi3 = spec["family"] == "phi3"
    ctx = spec["ppl_context"]
    prompt_ids = enc(PROMPT_TEXT, True)
    if bos_id is not None:
        assert prompt_ids[0] == bos_id and bos_id not in prompt_ids[1:], prompt_ids
        assert prompt_ids[1:] == enc(PROMPT_TEXT, False)
    else:
        assert prompt_ids == enc(PROMPT_TEXT, False), prompt_ids
    heldout_ids = enc(heldout, False)
    assert bos_id not in heldout_ids
    window = ([bos_id] + heldout_ids[:ctx - 1]) if bos_id is not None else heldout_ids[:ctx]
    assert len(window) == ctx
    with Float64Exact(model) as f64:
        logits = mf.logits_for(model, prompt_ids)
        d = float((logits - hand_logits(spec, model, prompt_ids, "short")).abs().max())
        dw = float((mf.logits_for(model, window) - hand_logits(spec, model, window, "long")).abs().max())
        notes.append(f"float64 check: max|HF_f64 - handwritten| = {d:.3g} (the {len(prompt_ids)}-token prompt"
                     f"{', short factors' if phi3 else ''}), {dw:.3g} (a full {ctx}-token window"
                     f"{', long factors' if phi3 else ''}); logits max |.| {float(logits.abs().max()):.3g}")
        assert d < 1e-10 and dw < 1e-10, (d, dw)
        assert all(m.f64_calls >= 1 for m in f64.norms)
        if phi3:
            calls = model.model.rotary_emb.f64_calls
            assert calls[0] == (len(prompt_ids), "short") and calls[1] == (ctx, "long"), calls
            # The other factor set would give clearly different logits (the factors matter).
            ds = float((logits - hand_logits(spec, model, prompt_ids, "long")).abs().max())
            dl = float((mf.logits_for(model, window) - hand_logits(spec, model, window, "short")).abs().max())
            notes.append(f"factor sets matter: prompt logits with long factors differ by {ds:.3g}, "
                         f"the {ctx}-token window with short factors by {dl:.3g}")
            assert ds > 1e-3 and dl > 1e-3
            calls.clear()
        prompts = [enc(text, True) for text in mf.GREEDY_PROMPT_TEXTS]
        k, g_ids, margins = mf.pick_greedy_prompt(model, prompts, GREEDY_MIN_MARGIN)
        assert min(margins) >= GREEDY_MIN_MARGIN, margins
        g_text, g_prompt = mf.GREEDY_PROMPT_TEXTS[k], prompts[k]
        gen = mf.greedy_via_generate(model, g_prompt, mf.GREEDY_NEW)
        assert gen == g_ids, (gen, g_ids)
        notes.append("generate() cross-check: identical greedy ids")
        if phi3:
            calls = model.model.rotary_emb.f64_calls
            longest = max(c[0] for c in calls)
            assert longest <= spec["original_ctx"] and {c[1] for c in calls} == {"short"}, calls
            assert len(g_prompt) + mf.GREEDY_NEW <= spec["original_ctx"] + 1
            notes.append(f"greedy: every forward <= {longest} positions (<= {spec['original_ctx']}): short factors")
        if bos_id is not None:
            no_bos = enc(g_text, False)
            assert no_bos == g_prompt[1:]
            nb_ids, _ = mf.greedy(model, no_bos, mf.GREEDY_NEW)
            notes.append(f"greedy prompt {g_text!r}: with BOS {g_prompt} -> {g_ids} (min margin {min(margins):.4f}); "
                         f"without BOS -> {nb_ids}; differ: {nb_ids != g_ids}")
            if phi3:
                f64.force("long")
            ppl, n_windows, nbytes = mrf.bos_perplexity(model, heldout_ids, bos_id, token_nbytes, ctx)
            if phi3:
                f64.force(None)
                calls = model.model.rotary_emb.f64_calls
                calls.clear()
                hf_rule, _, _ = mrf.bos_perplexity(model, heldout_ids, bos_id, token_nbytes, ctx)
                lens = [c[0] for c in calls]
                short_w = [n for n, w in calls if w == "short"]
                notes.append(f"perplexity windows: lengths {sorted(set(lens))}; HF's own rule would use the short "
                             f"factors for {len(short_w)} window(s) (lengths {short_w}): its nll_mean "
                             f"{hf_rule['ppl_nll_mean']:.12f} vs the reference's (long everywhere) "
                             f"{ppl['ppl_nll_mean']:.12f}; first 2 windows identical: "
                             f"{hf_rule['ppl_chunks2_nll_mean'] == ppl['ppl_chunks2_nll_mean']}")
                assert hf_rule["ppl_chunks2_nll_mean"] == ppl["ppl_chunks2_nll_mean"]
        else:
            notes.append(f"greedy prompt {g_text!r}: {g_prompt} -> {g_ids} (min margin {min(margins):.4f})")
            ppl, n_windows, nbytes = plain_perplexity(model, heldout_ids, token_nbytes, ctx)
    notes.append(f"perplexity: {len(heldout_ids)} held-out ids in {n_windows} windows of <= {ctx}; {nbytes} bytes "
                 f"by ppl_bytes_rule vs {len(heldout.encode('utf-8'))} UTF-8 bytes in the text; ppl "
                 f"{ppl['ppl_perplexity']:.4f}, bpb {ppl['ppl_bits_per_byte']:.4f}")
    ref = mrf.reference_entry(prompt_ids, logits, g_text, g_prompt, g_ids, margins, bos_id, ppl, bytes_rule)
    if phi3:
        ref["rope_factors"] = {"logits": "short", "ppl": "long"}
    return ref, logits


@torch.no_grad()
def check_hf_longrope_choice(model, prompt_ids, window, notes):
    """HF's own (unpatched, float32 rotary) Phi-3 forward: which factor set it leaves in
    rotary_emb.inv_freq, and how close its logits are to the float64 short / long ones."""
    r = model.model.rotary_emb
    cfg = model.config
    _, short, long, _ = phi3_rotary(cfg)
    out = {}
    for name, ids in (("prompt", prompt_ids), ("window", window)):
        lg = mf.logits_for(model, ids)
        inv = r.inv_freq.to(torch.float64)
        ds, dl = float((inv - short).abs().max() / short.abs().max()), float((inv - long).abs().max() / long.abs().max())
        chosen = "short" if ds < 1e-6 else "long" if dl < 1e-6 else "?"
        out[name] = (chosen, lg)
        notes.append(f"HF unpatched {len(ids)}-token forward leaves rotary_emb.inv_freq = the {chosen} set "
                     f"(rel diff to short {ds:.2g}, to long {dl:.2g})")
    assert out["prompt"][0] == "short" and out["window"][0] == "long", out
    with Float64Exact(model):
        for name, ids, want in (("prompt", prompt_ids, "short"), ("window", window, "long")):
            d = float((out[name][1] - mf.logits_for(model, ids)).abs().max())
            notes.append(f"HF unpatched (float32 rotary, softmax, RMSNorm) vs float64 {want} logits, {len(ids)} tokens: "
                         f"max |diff| {d:.3g}")
            assert d < 1e-4, d


# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------
def gguf_metadata(path):
    """{key: value} of the general.* / <arch>.* / tokenizer.ggml.* keys (arrays of tokens,
    scores, types and merges summarized) and [(tensor name, shape (ggml order), type)]."""
    reader = GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        v = field.contents()
        if isinstance(v, list) and len(v) > 8:
            v = f"[{len(v)} items: {v[:4]!r} ... {v[-2:]!r}]"
        elif isinstance(v, str) and len(v) > 100:
            v = f"<{len(v)} chars: {v[:50]!r}...>"
        meta[key] = v
    tensors = [(t.name, [int(x) for x in t.shape.tolist()], gguf.GGMLQuantizationType(t.tensor_type).name)
               for t in reader.tensors]
    return meta, tensors


def to_hf_state_dict(spec, cfg, arch, gg, hf_names):
    """The dequantized GGUF tensors under their HF names (float64); the rope factor tensors
    returned apart.  Qwen3 / Phi-3: no transform to undo (NEOX rotary, fused tensors kept)."""
    tmap = gguf.get_tensor_name_map({"qwen3": gguf.MODEL_ARCH.QWEN3, "phi3": gguf.MODEL_ARCH.PHI3}[arch],
                                    spec["n_layer"])
    back = {}
    for hn in hf_names:
        gn = tmap.get_name(hn, try_suffixes=(".weight", ".bias"))
        assert gn is not None and gn not in back, (hn, gn)
        back[gn] = hn
    sd, types_, extra = {}, {}, {}
    for gn, (tname, arr) in gg.items():
        if gn.startswith("rope_factors_"):
            extra[gn] = (tname, arr)
            continue
        hn = back[gn]
        sd[hn] = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float64)))
        types_[hn] = tname
    return sd, types_, extra


def make_gguf(spec, args, src_dir, cls, cfg, hf_tensors, hf_tok, heldout, bos_id, token_nbytes, rule, fixture_ref):
    notes = []
    hf_dir = os.path.join(args.work_dir, spec["gguf_name"])  # the directory name becomes general.name
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    shutil.copytree(src_dir, hf_dir, ignore=shutil.ignore_patterns("reference.json"))
    path = os.path.join(GGUF_OUT, spec["gguf_name"] + ".gguf")
    notes += mgf.convert(args.llama_cpp, hf_dir, path, spec["gguf_outtype"])
    meta, tlist = gguf_metadata(path)
    reader, gg = mgf.read_gguf(path)
    arch = mgf.gguf_arch(reader)
    assert arch == spec["arch"], arch
    types_all = {k: v[0] for k, v in gg.items()}
    hf_names = [k for k, _ in cls(cfg).named_parameters()]
    sd, hf_types, extra = to_hf_state_dict(spec, cfg, arch, gg, hf_names)
    assert set(sd) == set(hf_names), sorted(set(sd) ^ set(hf_names))
    for k, v in sd.items():
        exp = hf_tensors[k].to(torch.float16) if hf_types[k] == "F16" else hf_tensors[k].to(torch.float32)
        if not torch.equal(v, exp.to(torch.float64)):
            raise RuntimeError(f"{path}: {k} ({hf_types[k]}) differs from the checkpoint")
    notes.append("GGUF tensors == checkpoint " + ("(rounded to f16 where F16)" if spec["gguf_outtype"] == "f16" else "exactly")
                 + " under their HF names (nothing to undo)")
    if spec["family"] == "phi3":
        rp = cfg.rope_parameters
        for key, lst in (("rope_factors_long.weight", rp["long_factor"]), ("rope_factors_short.weight", rp["short_factor"])):
            tname, arr = extra.pop(key)
            assert tname == "F32" and np.array_equal(arr, np.array(lst, dtype=np.float32)), (key, arr)
        notes.append("rope_factors_long / _short == the config's lists as float32")
    assert not extra, extra
    model = cls(cfg).to(torch.float64)
    model.set_attn_implementation("eager")
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not (spec["tie"] and k == "lm_head.weight")]
    assert not missing and not res.unexpected_keys, (missing, res.unexpected_keys)
    if spec["tie"]:
        model.tie_weights()
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    model.eval()
    ref, logits = compute_reference(spec, model, hf_tok, heldout, bos_id, token_nbytes, rule, notes)
    ref["gguf_file"] = os.path.basename(path)
    ref["tensor_types"] = types_all
    dl = float((logits - torch.tensor(fixture_ref["logits"], dtype=torch.float64)).abs().max())
    notes.append(f"GGUF reference vs the HF fixture's reference: max |logits diff| {dl:.3g}; ppl_nll_mean "
                 f"{ref['ppl_nll_mean']:.12f} vs {fixture_ref['ppl_nll_mean']:.12f}; greedy ids "
                 f"{'equal' if ref['greedy_ids'] == fixture_ref['greedy_ids'] else 'DIFFER'}")
    if spec["gguf_outtype"] == "f32":
        same = {k: ref[k] == fixture_ref[k] for k in fixture_ref}
        assert all(same.values()), same
        notes.append("F32 file: its reference equals the HF fixture's reference.json exactly (every key)")
    mrf.write_reference(os.path.join(GGUF_OUT, spec["gguf_name"] + ".reference.json"), ref)
    counts = {}
    for t in types_all.values():
        counts[t] = counts.get(t, 0) + 1
    entry = dict(
        file=os.path.basename(path), reference=spec["gguf_name"] + ".reference.json", model=spec["model"],
        gguf_type=spec["gguf_outtype"], architecture=arch, bytes=os.path.getsize(path), sha256=mgf.sha256(path),
        tensor_type_counts=counts, tensor_types=types_all,
        made_by=f"convert_hf_to_gguf.py {spec['name']} --outtype {spec['gguf_outtype']}",
        ppl_perplexity=ref["ppl_perplexity"], source=f"tests/fixtures/{spec['name']}",
        generator="tools/make_family_fixtures.py",
        versions=dict(llama_cpp=args.llama_cpp_version, gguf=mgf.mf_version("gguf"),
                      transformers=mgf.mf_version("transformers"), torch=torch.__version__),
        notes=notes,
    )
    # <model>-hf/: the tokenizer / config files (tests/gguf.rs's hf_dir()).
    meta_dir = os.path.join(GGUF_OUT, spec["model"] + "-hf")
    if os.path.isdir(meta_dir):
        shutil.rmtree(meta_dir)
    os.makedirs(meta_dir)
    for fn in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        if os.path.exists(os.path.join(src_dir, fn)):
            shutil.copyfile(os.path.join(src_dir, fn), os.path.join(meta_dir, fn))
    return entry, meta, tlist


# ---------------------------------------------------------------------------
# Qwen3
# ---------------------------------------------------------------------------
def qwen3_tokenizer(out_path):
    tok = Tokenizer.from_file(os.path.join(FIX, "tokenizer.json"))
    assert tok.get_vocab_size() == mf.TOKENIZER_VOCAB and tok.post_processor is None
    tok.add_special_tokens(QWEN3_SPECIALS)
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in QWEN3_THINK])
    ids = {s: tok.token_to_id(s) for s in QWEN3_SPECIALS + QWEN3_THINK}
    assert list(ids.values()) == [384, 385, 386, 387], ids
    tok.save(out_path, pretty=True)
    return ids


def qwen3_tokenizer_config(tok_path, template):
    with open(tok_path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    tc = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "additional_special_tokens": list(QWEN3_SPECIALS),
        "bos_token": None,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": mf.SPECIAL,
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    if template is None:
        del tc["chat_template"]
    return tc


def build_qwen3(args, heldout):
    spec = QWEN3
    notes = []
    out = os.path.join(FIX, spec["name"])
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tok_path = os.path.join(out, "tokenizer.json")
    ids = qwen3_tokenizer(tok_path)
    template = None
    if os.path.exists(QWEN3_TEMPLATE):
        with open(QWEN3_TEMPLATE, encoding="utf-8", newline="") as f:
            template = f.read()
    notes.append(f"chat_template: {'tests/fixtures/chat/qwen3.jinja' if template else 'none (tests/fixtures/chat/qwen3.jinja absent)'}")
    mrf.write_json(os.path.join(out, "tokenizer_config.json"), qwen3_tokenizer_config(tok_path, template),
                   ensure_ascii=False)
    vocab = 389
    bos, eos = 0, ids["<|im_end|>"]
    cfg = Qwen3Config(
        vocab_size=vocab, hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["n_layer"], num_attention_heads=spec["n_head"], num_key_value_heads=spec["n_kv_head"],
        head_dim=spec["head_dim"], hidden_act="silu", max_position_embeddings=spec["n_positions"],
        rms_norm_eps=spec["rms_norm_eps"], rope_theta=spec["rope_theta"], tie_word_embeddings=True,
        use_sliding_window=False, sliding_window=None, max_window_layers=spec["n_layer"], attention_bias=False,
        attention_dropout=0.0, initializer_range=0.02, use_cache=True, bos_token_id=bos, eos_token_id=eos,
    )
    cfg.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(spec["seed"])
    model = Qwen3ForCausalLM(cfg)
    init_weights(model, spec["seed"])
    model = model.to(spec["dtype"]).eval()
    written = save_checkpoint(model, out)
    assert written["head_dim"] == 32 and written["rope_parameters"] == {"rope_theta": 1000000, "rope_type": "default"}
    assert written["sliding_window"] is None and written["use_sliding_window"] is False
    notes.append(f"config.json (save_pretrained): {json.dumps(written, sort_keys=True)}")
    mrf.write_sorted_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": bos, "do_sample": True, "eos_token_id": [eos, 0], "pad_token_id": 0,
        "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0",
    })
    cfg2 = AutoConfig.from_pretrained(out)
    assert cfg2.head_dim == 32 and cfg2.tie_word_embeddings and cfg2.layer_types == ["full_attention"] * 2

    hf_tok = AutoTokenizer.from_pretrained(out)
    assert hf_tok.bos_token_id is None and hf_tok.eos_token_id == eos and len(hf_tok) == 388
    raw = Tokenizer.from_file(tok_path)
    for text in [heldout, PROMPT_TEXT, "a<think>b</think>\n<|im_start|>user\nhi<|im_end|>", "In 1984, 42 people."]:
        assert hf_tok(text)["input_ids"] == raw.encode(text).ids, text
    think = hf_tok("<think>x</think>")["input_ids"]
    notes.append(f"AutoTokenizer: {type(hf_tok).__name__}, bos None, eos <|im_end|>={eos}, len {len(hf_tok)}; "
                 f"'<think>x</think>' -> {think}, decode(skip_special_tokens) keeps <think>: "
                 f"{hf_tok.decode(think, skip_special_tokens=True)!r}")
    # The trap: Qwen3's own tokenizer_class.
    tmp = os.path.join(args.work_dir, "qwen2tokenizer-check")
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    shutil.copytree(out, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    tc = json.load(open(os.path.join(tmp, "tokenizer_config.json")))
    tc["tokenizer_class"] = "Qwen2Tokenizer"
    mrf.write_json(os.path.join(tmp, "tokenizer_config.json"), tc)
    q2 = AutoTokenizer.from_pretrained(tmp)
    probe = [heldout, "In 1984, 42 people.", "DON'T", "cafe\u0301", "(hello) [x]", "a \n\n b", "x\u00a0y"]
    differs = [t for t in probe if q2(t)["input_ids"] != raw.encode(t).ids]
    notes.append(f"tokenizer_class Qwen2Tokenizer would give {type(q2).__name__} with normalizer "
                 f"{q2.backend_tokenizer.normalizer}, pre_tokenizer {str(q2.backend_tokenizer.pre_tokenizer)[:90]}...; "
                 f"ids differ from tokenizer.json for {differs}")
    if template:
        msgs = [{"role": "user", "content": "Hi"}]
        notes.append("apply_chat_template(user 'Hi', gen) = "
                     + repr(hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)))

    ref_model, tensors = mrf.load_reference(spec, out, notes, cls=Qwen3ForCausalLM)
    qn = tensors["model.layers.0.self_attn.q_norm.weight"].float()
    notes.append(f"q_norm.weight layer 0: shape {list(qn.shape)}, mean {float(qn.mean()):.3f}, std {float(qn.std()):.3f}")
    inv = {v: k for k, v in raw.get_vocab().items()}
    token_nbytes = lambda t: len(mf.token_bytes(inv[t]))  # noqa: E731
    rule = ("byte-level BPE: bytes of the token's byte-level string mapped back through the GPT-2 "
            "byte table (= UTF-8 bytes of the text)")
    ref, _ = compute_reference(spec, ref_model, hf_tok, heldout, None, token_nbytes, rule, notes)
    mrf.write_reference(os.path.join(out, "reference.json"), ref)
    entry, meta, tlist = make_gguf(spec, args, out, Qwen3ForCausalLM, ref_model.config, tensors, hf_tok, heldout,
                                   None, token_nbytes, rule, ref)
    summary = (f"{spec['name']}: vocab {vocab}, prompt {len(ref['prompt_ids'])} ids, greedy min margin "
               f"{min(ref['greedy_margins']):.4f}, ppl {ref['ppl_perplexity']:.4f}, bpb {ref['ppl_bits_per_byte']:.4f}")
    return summary, notes + entry["notes"], meta, tlist, entry


# ---------------------------------------------------------------------------
# Phi-3
# ---------------------------------------------------------------------------
def phi3_tokenizer(out_dir):
    shutil.copyfile(os.path.join(SP_SRC, "tokenizer.model"), os.path.join(out_dir, "tokenizer.model"))
    tok = Tokenizer.from_file(os.path.join(SP_SRC, "tokenizer.json"))
    assert tok.get_vocab_size() == mrf.SP_VOCAB
    tok.add_special_tokens([AddedToken(s, rstrip=s != "<|endoftext|>", lstrip=False, normalized=False, special=True)
                            for s in PHI3_ADDED])
    ids = {s: tok.token_to_id(s) for s in PHI3_ADDED}
    assert list(ids.values()) == list(range(512, 523)), ids
    tok.save(os.path.join(out_dir, "tokenizer.json"), pretty=True)
    return ids


def phi3_tokenizer_config(tok_path, template):
    with open(tok_path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "bos_token": "<s>",
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "legacy": True,
        "model_max_length": PHI3["n_positions"],
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def build_phi3(args, heldout):
    spec = PHI3
    notes = []
    out = os.path.join(FIX, spec["name"])
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    ids = phi3_tokenizer(out)
    # tests/fixtures/chat/phi3.5.jinja where it exists, else llama.cpp's copy (the same text).
    tpl = PHI35_TEMPLATE if os.path.exists(PHI35_TEMPLATE) else os.path.join(args.llama_cpp, PHI35_TEMPLATE_LLAMA_CPP)
    with open(tpl, encoding="utf-8", newline="") as f:
        template = f.read()
    notes.append(f"chat_template: {os.path.relpath(tpl, mf.REPO_ROOT) if tpl == PHI35_TEMPLATE else tpl}")
    tok_path = os.path.join(out, "tokenizer.json")
    mrf.write_json(os.path.join(out, "tokenizer_config.json"), phi3_tokenizer_config(tok_path, template))
    vocab = spec["vocab_size"]
    eot = ids["<|endoftext|>"]
    cfg = Phi3Config(
        vocab_size=vocab, hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["n_layer"], num_attention_heads=spec["n_head"], num_key_value_heads=spec["n_kv_head"],
        hidden_act="silu", max_position_embeddings=spec["n_positions"],
        original_max_position_embeddings=spec["original_ctx"], rms_norm_eps=spec["rms_norm_eps"],
        rope_scaling={"type": "longrope", "long_factor": list(LONG_FACTOR), "short_factor": list(SHORT_FACTOR)},
        rope_theta=spec["rope_theta"], partial_rotary_factor=spec["partial_rotary_factor"],
        sliding_window=spec["sliding_window"], attention_bias=False, attention_dropout=0.0, embd_pdrop=0.0,
        resid_pdrop=0.0, initializer_range=0.02, use_cache=True, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=eot, pad_token_id=eot,
    )
    cfg.architectures = ["Phi3ForCausalLM"]
    torch.manual_seed(spec["seed"])
    model = Phi3ForCausalLM(cfg)
    init_weights(model, spec["seed"])
    model = model.to(spec["dtype"]).eval()
    written = save_checkpoint(model, out)
    rp = written["rope_parameters"]
    assert rp["rope_type"] == "longrope" and rp["short_factor"] == SHORT_FACTOR and rp["long_factor"] == LONG_FACTOR
    assert rp["original_max_position_embeddings"] == 32 and rp["partial_rotary_factor"] == 0.75
    assert "head_dim" not in written and written["sliding_window"] == spec["sliding_window"]
    notes.append(f"config.json (save_pretrained): {json.dumps(written, sort_keys=True)}")
    mrf.write_sorted_json(os.path.join(out, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": 1, "eos_token_id": [ids["<|end|>"], ids["<|assistant|>"], eot],
        "pad_token_id": eot, "transformers_version": "4.43.3",
    })
    cfg2 = AutoConfig.from_pretrained(out)
    assert cfg2.rope_parameters == cfg.rope_parameters, (cfg2.rope_parameters, cfg.rope_parameters)

    hf_tok = AutoTokenizer.from_pretrained(out)
    assert hf_tok.bos_token_id == 1 and hf_tok.eos_token_id == eot and len(hf_tok) == 523, (hf_tok.eos_token_id, len(hf_tok))
    raw = Tokenizer.from_file(tok_path)
    chat = "<|user|>\nHi there<|end|>\n<|assistant|>\n"
    for text in [heldout, PROMPT_TEXT, chat, "a<|endoftext|> b", " leading space"]:
        assert hf_tok(text)["input_ids"] == raw.encode(text).ids, text
    msgs = [{"role": "user", "content": "Hi"}]
    rendered = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    notes.append(f"AutoTokenizer: {type(hf_tok).__name__}, bos 1, eos <|endoftext|>={eot}, len {len(hf_tok)}; "
                 f"{chat!r} -> {hf_tok(chat)['input_ids']} (rstrip eats the newline after <|user|>, <|end|>, "
                 f"<|assistant|>); apply_chat_template(user 'Hi', gen) = {rendered!r}")

    ref_model, tensors = mrf.load_reference(spec, out, notes, cls=Phi3ForCausalLM)
    cfg_ref = ref_model.config
    rot, short, long, attn = phi3_rotary(cfg_ref)
    notes.append(f"rotary: {rot} of {cfg_ref.hidden_size // cfg_ref.num_attention_heads} dims, attention factor "
                 f"{attn!r} (HF {ref_model.model.rotary_emb.attention_scaling!r}), short inv_freq "
                 f"{[round(x, 8) for x in short.tolist()]}, long inv_freq {[round(x, 8) for x in long.tolist()]}")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    table = mrf.sp_piece_nbytes(sp)
    token_nbytes = lambda t: table[t]  # noqa: E731
    rule = ("sentencepiece: <0xNN> byte-fallback pieces 1 byte, other pieces the UTF-8 length of the "
            "piece with each U+2581 counted as one space byte (the dummy-prefix U+2581 of the first "
            "token counts too)")
    prompt_ids = hf_tok(PROMPT_TEXT)["input_ids"]
    heldout_ids = hf_tok(heldout, add_special_tokens=False)["input_ids"]
    check_hf_longrope_choice(ref_model, prompt_ids, [1] + heldout_ids[:spec["ppl_context"] - 1], notes)
    ref, _ = compute_reference(spec, ref_model, hf_tok, heldout, 1, token_nbytes, rule, notes)
    mrf.write_reference(os.path.join(out, "reference.json"), ref)
    entry, meta, tlist = make_gguf(spec, args, out, Phi3ForCausalLM, cfg_ref, tensors, hf_tok, heldout, 1,
                                   token_nbytes, rule, ref)
    summary = (f"{spec['name']}: vocab {vocab}, prompt {len(ref['prompt_ids'])} ids, greedy min margin "
               f"{min(ref['greedy_margins']):.4f}, ppl {ref['ppl_perplexity']:.4f}, bpb {ref['ppl_bits_per_byte']:.4f}")
    return summary, notes + entry["notes"], meta, tlist, entry


# ---------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(description="Qwen3 and Phi-3 fixtures (see the module docstring).")
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (convert_hf_to_gguf.py, gguf-py, models/templates)")
    ap.add_argument("--work-dir", default="/tmp/wgpt-family-build", help="scratch directory")
    ap.add_argument("--only", nargs="+", choices=["qwen3", "phi3"])
    ap.add_argument("--llama-cpp-version", default="b11312 (vendored in the llama-cpp-python 0.3.36 sdist)",
                    help="recorded in manifest.json")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.llama_cpp = os.path.abspath(args.llama_cpp)
    mf.quiet_and_seeded()
    os.makedirs(args.work_dir, exist_ok=True)
    with open(HELDOUT, "rb") as f:
        heldout = f.read().decode("utf-8")
    which = args.only or ["qwen3", "phi3"]
    report, entries = [], {}
    for fam, build in (("qwen3", build_qwen3), ("phi3", build_phi3)):
        if fam in which:
            summary, notes, meta, tlist, entry = build(args, heldout)
            report.append((summary, notes, meta, tlist))
            entries[entry["model"]] = entry
    mrf.update_manifest(entries)
    for summary, notes, meta, tlist in report:
        name = summary.split(":")[0]
        for n in notes:
            print(f"[{name}] {n}")
        for k, v in meta.items():
            print(f"[{name}] gguf {k} = {v!r}")
        for tn, shape, tt in tlist:
            print(f"[{name}] tensor {tn:28s} {tt:4s} {shape}")
    for summary, *_ in report:
        print(summary)
    for d in ("tiny-qwen3-bf16", "tiny-phi3-f32"):
        p = os.path.join(FIX, d)
        if os.path.isdir(p):
            print(f"{d}: " + ", ".join(f"{x} {os.path.getsize(os.path.join(p, x))}" for x in sorted(os.listdir(p))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
