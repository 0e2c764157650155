#!/usr/bin/env python3
"""Generate reference fixtures for the `wgpt` crate from Hugging Face transformers.

Run from the repository root (needs the packages in tools/requirements.txt and
the corpus at ../shared/data/tinyshakespeare.txt):

    python tools/make_fixtures.py
    python tools/make_fixtures.py --only tiny-gpt1-f32 tiny-opt-f16   # some models only

The script is deterministic (fixed seeds, single thread) and overwrites the
files listed below.  It only writes under tests/fixtures/ (it reads
tests/fixtures/chat/qwen2.5.jinja for tiny-qwen2-bf16; the chat-template cases
are made by tools/make_chat_fixtures.py).  With
`--only NAME...` it rewrites only those model directories and reads
tokenizer.json / heldout_slice.txt from disk as they are (it re-trains the
tokenizer in memory only to report whether the file on disk still matches);
nothing else is touched.  (Note: re-running the GPT-2 models with a different
torch/CPU may change the last bit of some float64 logits.)

tests/fixtures/tokenizer.json
    Byte-level BPE tokenizer trained with HF `tokenizers` on the first 200,000
    bytes of tinyshakespeare.txt: ByteLevel pre-tokenizer (add_prefix_space=False),
    ByteLevel decoder, BPE model, vocab_size 384 (256 byte symbols + 1 special
    + 127 merges), special token `<|endoftext|>` (id 0).  No normalizer and no
    post-processor.  Note: recent `tokenizers` store merges as [left, right]
    pairs, not "left right" strings.

tests/fixtures/heldout_slice.txt
    4,000 bytes of tinyshakespeare.txt starting right after the first newline
    at or after byte floor(0.9 * file_size).  Used for the perplexity numbers.

tests/fixtures/<model>/  for model in
    tiny-orig-f32     n_embd 96, n_head 3, n_layer 2, n_inner 260, n_positions 64,
                      gelu_new, f32, ORIGINAL OpenAI/GPT-2 key naming in a single
                      model.safetensors (no `transformer.` prefix, no lm_head,
                      plus `h.N.attn.bias` (1,1,P,P) f32 causal mask and
                      `h.N.attn.masked_bias` scalar -1e4 buffers)
    tiny-hf-f16       n_embd 64, n_head 4, n_layer 3, n_inner null, n_positions 48,
                      gelu (erf), tied embeddings, f16, save_pretrained
    tiny-untied-bf16  n_embd 48, n_head 2, n_layer 1, n_inner 100, n_positions 40,
                      relu, tie_word_embeddings=False (separate lm_head.weight),
                      bf16, save_pretrained
    tiny-sharded-f32  n_embd 32, n_head 4, n_layer 2, n_inner null, n_positions 32,
                      gelu_pytorch_tanh, f32, save_pretrained with a small
                      max_shard_size -> model.safetensors.index.json + shards
  other families (config.json always exactly as save_pretrained writes it):
    tiny-gpt1-f32     OpenAIGPTLMHeadModel (model_type openai-gpt): n_embd 84,
                      n_head 3 (head_dim 28), n_layer 2, n_positions 40, FFN 4*84,
                      afn "gelu" (= HF's gelu_new, the tanh approximation),
                      post-LN blocks, no final LN, tied head, f32, save_pretrained
                      (`transformer.tokens_embed/positions_embed/h.N...`).
    tiny-opt-f16      OPTForCausalLM, pre-LN (do_layer_norm_before true, with
                      the final decoder LN), hidden 64, 4 heads, 2 layers,
                      ffn_dim 136, max_position_embeddings 48 (embed_positions
                      has 48+2 rows: HF offset 2), word_embed_proj_dim 64, relu,
                      tied, f16.  Tensors named like the Hub's facebook/opt-*
                      files: `decoder.*` without `model.` and without lm_head
                      (renamed after save_pretrained; config.json from it).
    tiny-opt350-bf16  OPT in the opt-350m layout: do_layer_norm_before false
                      (post-LN, no final decoder LN), word_embed_proj_dim 32 !=
                      hidden 48 (project_in / project_out, no bias), 3 heads,
                      2 layers, ffn_dim 100, max_position_embeddings 40, relu,
                      tied, bf16, save_pretrained names (`model.decoder.*`).
    tiny-neox-par-f32 GPTNeoXForCausalLM, use_parallel_residual true, hidden 96,
                      3 heads (head_dim 32), partial_rotary_factor (rotary_pct)
                      0.25 -> 8 rotary dims, rope_theta (rotary_emb_base) 10000,
                      2 layers, intermediate 200, max_position_embeddings 64,
                      gelu (erf), attention_bias true, untied `embed_out.weight`,
                      f32, sharded (3 shards + index) plus the Pythia buffers
                      gpt_neox.layers.N.attention.bias (bool (1,1,64,64) causal
                      mask), .attention.masked_bias (f32 scalar -1e9) and
                      .attention.rotary_emb.inv_freq (f32 [4]) added to the shard
                      holding that layer's query_key_value (index weight_map and
                      total_size updated).
    tiny-neox-seq-bf16 GPTNeoX, use_parallel_residual false, hidden 64, 4 heads
                      (head_dim 16), partial_rotary_factor 0.5 -> 8 rotary dims,
                      rope_theta 500, 2 layers, intermediate 128,
                      max_position_embeddings 48, gelu, untied, bf16,
                      save_pretrained.
    transformers 5 writes NeoX's rotary settings as
    "rope_parameters": {"partial_rotary_factor", "rope_theta", "rope_type"}
    (no rotary_pct / rotary_emb_base keys).  OPT's pad_token_id is also the
    `<|endoftext|>` id.
  Llama family (RMSNorm, gated SiLU MLP, grouped-query attention, rotary with
  rotate-half pairing on the whole head, `model.*` names, eager attention):
    tiny-llama-gqa-f16 LlamaForCausalLM, hidden 96, 6 heads / 2 key-value heads,
                      head_dim 16, intermediate 200, 2 layers,
                      max_position_embeddings 64, rms_norm_eps 1e-5, untied
                      lm_head, f16, save_pretrained.  Rotary "llama3" scaling:
                      rope_theta 10000, factor 4, low_freq_factor 1,
                      high_freq_factor 4, original_max_position_embeddings 32
                      (of the 8 inverse frequencies, i=0 is kept, i=1 blended,
                      i=2..7 divided by 4; printed by the script).
                      config.json eos_token_id is the list [0, 1] and
                      generation_config.json's eos_token_id is [0, 1, 2] (an
                      extra stop id, as Llama 3 adds <|eom_id|>); the greedy
                      reference still ignores eos.
    tiny-qwen2-bf16   Qwen2ForCausalLM, hidden 64, 4 heads / 1 key-value head
                      (head_dim 16), q/k/v biases (o_proj none), intermediate
                      136, 2 layers, max_position_embeddings 48, rms_norm_eps
                      1e-6, rope_theta 10000, tied, bf16.  config.json has
                      use_sliding_window false with sliding_window 32 and
                      max_window_layers 1, as the Hub's Qwen2/2.5 configs carry
                      a window they do not use: transformers 5 itself writes
                      sliding_window null in that case, so the script puts 32
                      back (the only edit to a save_pretrained config.json);
                      loading it gives full attention everywhere, which is what
                      the references use (the script prints how much the last
                      logits of a 48-token window would move with the window).
                      Also tokenizer_config.json in the Qwen2.5 layout:
                      chat_template = tests/fixtures/chat/qwen2.5.jinja (read
                      from there), bos_token null, eos_token <|endoftext|>
                      (transformers 5 would put the template in a separate
                      chat_template.jinja; Hub files have it inside).
    tiny-mistral-f32  MistralForCausalLM, hidden 64, 4 heads / 2 key-value heads,
                      head_dim 16, intermediate 120, 2 layers,
                      max_position_embeddings 48, sliding_window null,
                      rms_norm_eps 1e-5, rope_theta 10000, untied, f32,
                      save_pretrained with max_shard_size 200KB -> 3 shards +
                      index.
    transformers 5 writes the rotary settings of all three as one
    "rope_parameters" dict {rope_type, rope_theta[, factor, low_freq_factor,
    high_freq_factor, original_max_position_embeddings]}: no top-level
    rope_theta or rope_scaling keys.  head_dim is written for Llama and
    Mistral, not for Qwen2 (hidden / heads).  The RMSNorm weights are 1 +
    noise like the LayerNorm weights; biases (Qwen2's q/k/v) like the others.
  All models: vocab_size 389 (> tokenizer's 384 on purpose), bos/eos id = id of
  `<|endoftext|>` (tiny-llama-gqa-f16: eos [0, 1], see above), layer norm eps
  1e-5 (tiny-qwen2-bf16: RMSNorm eps 1e-6), random weights with a larger scale
  than HF's default init (see `init_weights`); every hidden/FFN size and
  head_dim (and key/value width) is a multiple of 4.
  Each directory holds config.json, the weights, a copy of tokenizer.json
  (save_pretrained dirs also get generation_config.json) and reference.json
  with (all computed in float64 from the weights exactly as stored in the
  file, model.eval(), eager attention):
    prompt_ids              13 token ids
    logits                  13 x vocab_size full logits for every prompt position
    greedy_prompt_ids       5 token ids (per model: first of a fixed list of
                            prompts whose greedy margins are all >= 0.05 and
                            whose continuation has >= 3 distinct ids)
    greedy_ids              12 greedily generated ids (full recompute each step,
                            argmax, no eos stopping; cross-checked with generate())
    greedy_margins          top1 - top2 logit at each of the 12 steps
    ppl_context             window length (= n_positions / max_position_embeddings)
    ppl_tokens_scored       number of predicted tokens
    ppl_nll_mean            mean natural-log NLL
    ppl_perplexity          exp(ppl_nll_mean)
    ppl_bits_per_byte       total NLL in bits / UTF-8 bytes of the scored tokens
    ppl_chunks2_nll_mean    same as ppl_nll_mean restricted to the first 2 windows
    ppl_chunks2_tokens_scored
  Perplexity protocol: encode heldout_slice.txt without special tokens, split
  ids into consecutive non-overlapping windows of n_positions tokens (the last
  one may be shorter; a final window of < 2 tokens is dropped) and score every
  token but the first of each window given the preceding tokens of its window.
  Floats are written with full f64 precision (Python float repr).
  Float64 end to end: transformers 5 computes the OPT / GPT-NeoX / Llama-family
  eager softmax in float32, the RoPE inv_freq (including the llama3 rule) and
  cos/sin in float32, and the Llama-family RMSNorm through a float32 round trip,
  even in a float64 model; while computing the references those are patched to
  float64 (`float64_exact`).  For every non-GPT-2 model the patched HF logits
  are checked against an independent hand-written float64 forward
  (`handwritten_logits`, must agree to < 1e-10, for the Llama family also on a
  full context window; the unpatched HF differs by ~1e-6 for OPT/NeoX/Llama).

At the end a one-line summary per model is printed.
"""

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import shutil
import sys
import types
import warnings

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OpenAIGPTConfig,
    OpenAIGPTLMHeadModel,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.gpt_neox import modeling_gpt_neox
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.opt import modeling_opt
from transformers.models.qwen2 import modeling_qwen2
from transformers.utils import logging as hf_logging

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(REPO_ROOT, "..", "shared", "data", "tinyshakespeare.txt")
FIX = os.path.join(REPO_ROOT, "tests", "fixtures")

TOKENIZER_VOCAB = 384
MODEL_VOCAB = 389
TRAIN_BYTES = 200_000
HELDOUT_BYTES = 4_000
SPECIAL = "<|endoftext|>"

PROMPT_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?"
PROMPT_LEN = 13
# Candidate greedy prompts, tried in order per model; the first one whose 12
# greedy steps all have a top1-top2 margin >= GREEDY_MIN_MARGIN and that yields
# >= GREEDY_MIN_DISTINCT distinct new ids is used (else the best candidate by
# (margin ok, #distinct, min margin)).  Keeps greedy fixtures robust
# against f32-vs-f64 rounding on the Rust side.
GREEDY_PROMPT_TEXTS = [
    "KING HENRY:\nNow",
    "First Citizen:\n",
    "JULIET:\nO Romeo",
    "Thou art",
    "What say you",
    "MENENIUS:\nI",
    "Good my lord",
    "And then",
    "O, she doth",
    "My gracious",
    "Come hither",
    "Here is the",
    "Why, how now",
    "Let me see",
]
GREEDY_PROMPT_LEN = 5
GREEDY_NEW = 12
GREEDY_MIN_MARGIN = 0.05
GREEDY_MIN_DISTINCT = 3  # prefer continuations that are not one repeated token

# Init scales (larger than HF default so that logits are far from flat).
STD_LINEAR = 0.15
STD_WTE = 0.4
STD_WPE = 0.1
STD_LN = 0.1
STD_BIAS = 0.05

MODELS = [
    dict(
        name="tiny-orig-f32", seed=1001, n_embd=96, n_head=3, n_layer=2, n_inner=260,
        n_positions=64, activation_function="gelu_new", dtype=torch.float32,
        tie=True, style="original",
    ),
    dict(
        name="tiny-hf-f16", seed=1002, n_embd=64, n_head=4, n_layer=3, n_inner=None,
        n_positions=48, activation_function="gelu", dtype=torch.float16,
        tie=True, style="hf",
    ),
    dict(
        name="tiny-untied-bf16", seed=1003, n_embd=48, n_head=2, n_layer=1, n_inner=100,
        n_positions=40, activation_function="relu", dtype=torch.bfloat16,
        tie=False, style="hf",
    ),
    dict(
        name="tiny-sharded-f32", seed=1004, n_embd=32, n_head=4, n_layer=2, n_inner=None,
        n_positions=32, activation_function="gelu_pytorch_tanh", dtype=torch.float32,
        tie=True, style="hf", max_shard_size="60KB",
    ),
    # ---- other model families (see the docstring) ----
    dict(
        name="tiny-gpt1-f32", family="gpt1", seed=1005, n_embd=84, n_head=3, n_layer=2,
        n_positions=40, afn="gelu", dtype=torch.float32, tie=True, style="hf",
    ),
    dict(
        name="tiny-opt-f16", family="opt", seed=1006, hidden_size=64, n_head=4, n_layer=2,
        ffn_dim=136, n_positions=48, word_embed_proj_dim=64, do_layer_norm_before=True,
        activation_function="relu", dtype=torch.float16, tie=True, style="opt-original",
    ),
    dict(
        name="tiny-opt350-bf16", family="opt", seed=1007, hidden_size=48, n_head=3, n_layer=2,
        ffn_dim=100, n_positions=40, word_embed_proj_dim=32, do_layer_norm_before=False,
        activation_function="relu", dtype=torch.bfloat16, tie=True, style="hf",
    ),
    dict(
        name="tiny-neox-par-f32", family="neox", seed=1008, hidden_size=96, n_head=3, n_layer=2,
        intermediate_size=200, n_positions=64, rotary_pct=0.25, rotary_emb_base=10000,
        use_parallel_residual=True, hidden_act="gelu", dtype=torch.float32, tie=False,
        style="pythia", max_shard_size="350KB",
    ),
    dict(
        name="tiny-neox-seq-bf16", family="neox", seed=1009, hidden_size=64, n_head=4, n_layer=2,
        intermediate_size=128, n_positions=48, rotary_pct=0.5, rotary_emb_base=500,
        use_parallel_residual=False, hidden_act="gelu", dtype=torch.bfloat16, tie=False,
        style="hf",
    ),
    # ---- Llama family (Llama, Qwen2, Mistral; see the docstring) ----
    dict(
        name="tiny-llama-gqa-f16", family="llama", seed=1010, hidden_size=96, n_head=6, n_kv_head=2,
        head_dim=16, intermediate_size=200, n_layer=2, n_positions=64, rms_norm_eps=1e-5,
        rope_parameters=dict(
            rope_type="llama3", rope_theta=10000.0, factor=4.0, low_freq_factor=1.0,
            high_freq_factor=4.0, original_max_position_embeddings=32,
        ),
        eos_token_id=[0, 1], generation_eos_token_id=[0, 1, 2],
        dtype=torch.float16, tie=False, style="hf",
    ),
    dict(
        name="tiny-qwen2-bf16", family="qwen2", seed=1011, hidden_size=64, n_head=4, n_kv_head=1,
        intermediate_size=136, n_layer=2, n_positions=48, rms_norm_eps=1e-6,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        sliding_window=32, max_window_layers=1,
        dtype=torch.bfloat16, tie=True, style="hf", chat_template="qwen2.5",
    ),
    dict(
        name="tiny-mistral-f32", family="mistral", seed=1012, hidden_size=64, n_head=4, n_kv_head=2,
        head_dim=16, intermediate_size=120, n_layer=2, n_positions=48, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        dtype=torch.float32, tie=False, style="hf", max_shard_size="200KB",
    ),
]
CHAT_DIR = os.path.join(FIX, "chat")

MODEL_CLASSES = {
    "gpt2": GPT2LMHeadModel,
    "gpt1": OpenAIGPTLMHeadModel,
    "opt": OPTForCausalLM,
    "neox": GPTNeoXForCausalLM,
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "mistral": MistralForCausalLM,
}
# Llama-style families: RMSNorm, gated SiLU MLP, grouped-query attention,
# half-split ("rotate_half") rotary on the whole head, `model.*` tensor names.
LLAMA_FAMILIES = ("llama", "qwen2", "mistral")


def family(spec):
    return spec.get("family", "gpt2")


# ----------------------------------------------------------------------------
# GPT-2 byte <-> unicode table (written from the published description of the
# scheme: printable latin-1 bytes map to themselves, the others to 256+k).
# ----------------------------------------------------------------------------
def gpt2_byte_to_char():
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("\u00a1"), ord("\u00ac") + 1))
    keep += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


CHAR_TO_BYTE = {c: b for b, c in gpt2_byte_to_char().items()}


def token_bytes(token_str):
    return bytes(CHAR_TO_BYTE[c] for c in token_str)


# ----------------------------------------------------------------------------
# Tokenizer + held-out slice
# ----------------------------------------------------------------------------
def build_tokenizer_and_slice():
    with open(CORPUS, "rb") as f:
        data = f.read()

    train_text = data[:TRAIN_BYTES].decode("utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([train_text], trainer=trainer)
    assert tok.get_vocab_size() == TOKENIZER_VOCAB, tok.get_vocab_size()
    tok_path = os.path.join(FIX, "tokenizer.json")
    tok.save(tok_path, pretty=True)

    start = data.index(b"\n", int(len(data) * 0.9)) + 1
    heldout = data[start:start + HELDOUT_BYTES]
    heldout.decode("utf-8")  # must be valid UTF-8
    with open(os.path.join(FIX, "heldout_slice.txt"), "wb") as f:
        f.write(heldout)

    # Reload from disk so that everything below uses exactly the saved file.
    tok = Tokenizer.from_file(tok_path)
    return tok, tok_path, heldout.decode("utf-8"), start


def load_tokenizer_and_slice():
    """Use tests/fixtures/tokenizer.json and heldout_slice.txt as they are on disk.

    Used by --only: nothing shared is rewritten.  If the corpus is available the
    files are checked against what build_tokenizer_and_slice() would write (a
    mismatch is only reported: the new references are computed from the files
    on disk, so they stay consistent with them either way).
    """
    tok_path = os.path.join(FIX, "tokenizer.json")
    with open(os.path.join(FIX, "heldout_slice.txt"), "rb") as f:
        heldout = f.read()
    tok = Tokenizer.from_file(tok_path)
    assert tok.get_vocab_size() == TOKENIZER_VOCAB, tok.get_vocab_size()
    notes, start = [], None
    if os.path.exists(CORPUS):
        with open(CORPUS, "rb") as f:
            data = f.read()
        start = data.index(b"\n", int(len(data) * 0.9)) + 1
        if data[start:start + HELDOUT_BYTES] != heldout:
            notes.append("WARNING: heldout_slice.txt differs from the corpus slice it should hold")
        retrained = Tokenizer(models.BPE())
        retrained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        retrained.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=TOKENIZER_VOCAB,
            special_tokens=[SPECIAL],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        retrained.train_from_iterator([data[:TRAIN_BYTES].decode("utf-8")], trainer=trainer)
        with open(tok_path, "r", encoding="utf-8") as f:
            on_disk = f.read()
        same = retrained.to_str(pretty=True) == on_disk
        notes.append(f"tokenizer.json on disk identical to a fresh training run: {same}")
    else:
        notes.append(f"corpus {CORPUS} not found: tokenizer/held-out slice not re-checked")
    return tok, tok_path, heldout.decode("utf-8"), start, notes


def fixed_ids(tok, text, n, eos_id):
    ids = tok.encode(text, add_special_tokens=False).ids[:n]
    # Pad (deterministically) with other, non-special ids if the text is short.
    k = 0
    while len(ids) < n:
        cand = 1 + (37 * k + 11) % (TOKENIZER_VOCAB - 1)
        k += 1
        if cand != eos_id:
            ids.append(cand)
    return ids


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------
def make_config(spec, eos_id):
    fam = family(spec)
    if fam == "gpt1":
        cfg = OpenAIGPTConfig(
            vocab_size=MODEL_VOCAB,
            n_positions=spec["n_positions"],
            n_embd=spec["n_embd"],
            n_layer=spec["n_layer"],
            n_head=spec["n_head"],
            afn=spec["afn"],
            layer_norm_epsilon=1e-5,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            tie_word_embeddings=spec["tie"],
        )
        cfg.architectures = ["OpenAIGPTLMHeadModel"]
        return cfg
    if fam == "opt":
        cfg = OPTConfig(
            vocab_size=MODEL_VOCAB,
            hidden_size=spec["hidden_size"],
            num_hidden_layers=spec["n_layer"],
            num_attention_heads=spec["n_head"],
            ffn_dim=spec["ffn_dim"],
            max_position_embeddings=spec["n_positions"],
            word_embed_proj_dim=spec["word_embed_proj_dim"],
            do_layer_norm_before=spec["do_layer_norm_before"],
            activation_function=spec["activation_function"],
            # Our tokenizer has a single special token: use it for bos/eos/pad
            # (pad only sets nn.Embedding's padding_idx, irrelevant for inference).
            pad_token_id=eos_id,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            tie_word_embeddings=spec["tie"],
        )
        cfg.architectures = ["OPTForCausalLM"]
        return cfg
    if fam == "neox":
        # transformers 5 turns rotary_pct / rotary_emb_base into
        # rope_parameters = {partial_rotary_factor, rope_theta, rope_type}.
        cfg = GPTNeoXConfig(
            vocab_size=MODEL_VOCAB,
            hidden_size=spec["hidden_size"],
            num_hidden_layers=spec["n_layer"],
            num_attention_heads=spec["n_head"],
            intermediate_size=spec["intermediate_size"],
            hidden_act=spec["hidden_act"],
            max_position_embeddings=spec["n_positions"],
            layer_norm_eps=1e-5,
            rotary_pct=spec["rotary_pct"],
            rotary_emb_base=spec["rotary_emb_base"],
            use_parallel_residual=spec["use_parallel_residual"],
            attention_bias=True,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            tie_word_embeddings=spec["tie"],
        )
        rp = cfg.rope_parameters
        assert rp["partial_rotary_factor"] == spec["rotary_pct"], rp
        assert rp["rope_theta"] == spec["rotary_emb_base"], rp
        assert rp["rope_type"] == "default", rp
        cfg.architectures = ["GPTNeoXForCausalLM"]
        return cfg
    if fam in LLAMA_FAMILIES:
        # transformers 5 takes (and writes) the rotary settings as one
        # "rope_parameters" dict {rope_type, rope_theta, ...}: no rope_theta /
        # rope_scaling keys at the top level.
        common = dict(
            vocab_size=MODEL_VOCAB,
            hidden_size=spec["hidden_size"],
            intermediate_size=spec["intermediate_size"],
            num_hidden_layers=spec["n_layer"],
            num_attention_heads=spec["n_head"],
            num_key_value_heads=spec["n_kv_head"],
            hidden_act="silu",
            max_position_embeddings=spec["n_positions"],
            rms_norm_eps=spec["rms_norm_eps"],
            rope_parameters=dict(spec["rope_parameters"]),
            bos_token_id=eos_id,
            eos_token_id=spec.get("eos_token_id", eos_id),
            tie_word_embeddings=spec["tie"],
        )
        if fam == "llama":
            cfg = LlamaConfig(head_dim=spec["head_dim"], attention_bias=False, mlp_bias=False, **common)
            cfg.architectures = ["LlamaForCausalLM"]
        elif fam == "qwen2":
            # Qwen2 configs on the Hub carry a sliding_window even with
            # use_sliding_window false; transformers 5 nulls it in that case
            # (build_model writes it back into config.json, see the docstring).
            cfg = Qwen2Config(
                use_sliding_window=False, sliding_window=spec["sliding_window"],
                max_window_layers=spec["max_window_layers"], **common,
            )
            assert cfg.sliding_window is None and set(cfg.layer_types) == {"full_attention"}, cfg
            cfg.architectures = ["Qwen2ForCausalLM"]
        else:
            cfg = MistralConfig(head_dim=spec["head_dim"], sliding_window=None, **common)
            cfg.architectures = ["MistralForCausalLM"]
        assert cfg.rope_parameters == spec["rope_parameters"], cfg.rope_parameters
        return cfg
    cfg = GPT2Config(
        vocab_size=MODEL_VOCAB,
        n_positions=spec["n_positions"],
        n_embd=spec["n_embd"],
        n_layer=spec["n_layer"],
        n_head=spec["n_head"],
        n_inner=spec["n_inner"],
        activation_function=spec["activation_function"],
        layer_norm_epsilon=1e-5,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=spec["tie"],
    )
    cfg.architectures = ["GPT2LMHeadModel"]
    return cfg


def check_shapes(spec, cfg):
    """Every hidden/FFN size and head_dim a multiple of 4 (the Rust kernels' vec4 loads)."""
    fam = family(spec)
    if fam in ("gpt2", "gpt1"):
        hidden, heads = cfg.n_embd, cfg.n_head
        ffn = 4 * hidden if fam == "gpt1" or cfg.n_inner is None else cfg.n_inner
        sizes = [hidden, ffn]
    elif fam == "opt":
        hidden, heads = cfg.hidden_size, cfg.num_attention_heads
        sizes = [hidden, cfg.ffn_dim, cfg.word_embed_proj_dim]
    elif fam in LLAMA_FAMILIES:
        heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
        head_dim = llama_head_dim(cfg)
        assert heads % kv == 0, (heads, kv)
        assert head_dim * heads == cfg.hidden_size, "q_proj is square in these fixtures"
        sizes = [cfg.hidden_size, cfg.intermediate_size, head_dim, kv * head_dim]
        assert all(x % 4 == 0 for x in sizes), (spec["name"], sizes)
        return
    else:
        hidden, heads = cfg.hidden_size, cfg.num_attention_heads
        sizes = [hidden, cfg.intermediate_size]
        head_dim = hidden // heads
        rot = int(head_dim * cfg.rope_parameters["partial_rotary_factor"])
        assert rot % 2 == 0 and rot == head_dim * cfg.rope_parameters["partial_rotary_factor"], rot
    assert hidden % heads == 0
    sizes.append(hidden // heads)
    assert all(x % 4 == 0 for x in sizes), (spec["name"], sizes)


def init_std_mean(fam, name):
    """(std, mean) of the random init of parameter `name` (larger than HF's default)."""
    if fam == "gpt2":
        if name.endswith("wte.weight"):
            return STD_WTE, 0.0
        if name.endswith("wpe.weight"):
            return STD_WPE, 0.0
        if name.endswith(".bias"):
            return STD_BIAS, 0.0
        if ("ln_" in name) and name.endswith(".weight"):
            return STD_LN, 1.0
        if name.endswith(".weight"):  # Conv1D weights and untied lm_head
            return STD_LINEAR, 0.0
        raise RuntimeError(f"unhandled parameter {name}")
    if fam in LLAMA_FAMILIES:
        token_emb, pos_emb = "embed_tokens.weight", None
    else:
        token_emb = {"gpt1": "tokens_embed.weight", "opt": "embed_tokens.weight", "neox": "embed_in.weight"}[fam]
        pos_emb = {"gpt1": "positions_embed.weight", "opt": "embed_positions.weight", "neox": None}[fam]
    if name.endswith(token_emb):
        return STD_WTE, 0.0
    if pos_emb is not None and name.endswith(pos_emb):
        return STD_WPE, 0.0
    if name.endswith(".bias"):
        return STD_BIAS, 0.0
    leaf = name.split(".")[-2]
    if leaf.startswith("ln_") or leaf.endswith("layer_norm") or leaf.endswith("layernorm") or leaf == "norm":
        assert name.endswith(".weight"), name
        return STD_LN, 1.0
    if name.endswith(".weight"):  # linear / Conv1D weights, projections, untied head
        return STD_LINEAR, 0.0
    raise RuntimeError(f"unhandled parameter {name}")


@torch.no_grad()
def init_weights(model, seed, fam="gpt2"):
    """Deterministic, larger-than-default random init (in f32)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())  # tied lm_head appears only once
    for name in sorted(params):
        p = params[name]
        std, mean = init_std_mean(fam, name)
        vals = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean
        p.copy_(vals.to(p.dtype))


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def load_with_report(path, cls=GPT2LMHeadModel, **kwargs):
    """from_pretrained, returning (model, loading_info, captured messages)."""
    cap = LogCapture()
    hf_logger = hf_logging.get_logger("transformers")
    hf_logger.addHandler(cap)
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        model, info = cls.from_pretrained(
            path, output_loading_info=True, attn_implementation="eager", **kwargs
        )
    hf_logger.removeHandler(cap)
    msgs = cap.records + [str(w.message) for w in wlist]
    return model, info, msgs


def save_hf(model, out_dir, spec):
    kwargs = {}
    if "max_shard_size" in spec:
        kwargs["max_shard_size"] = spec["max_shard_size"]
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers 4.x; always safe in 5.x
    model.save_pretrained(out_dir, **kwargs)


def save_original(model, out_dir, spec):
    """Write the OpenAI/GPT-2-hub style single-file checkpoint."""
    sd = {}
    for k, v in model.transformer.state_dict().items():
        sd[k] = v.detach().clone().contiguous()
    P = spec["n_positions"]
    mask = torch.tril(torch.ones(P, P, dtype=torch.float32)).view(1, 1, P, P)
    for i in range(spec["n_layer"]):
        sd[f"h.{i}.attn.bias"] = mask.clone()
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4, dtype=torch.float32)
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(os.path.join(out_dir, "config.json"))


def stored_tensors(out_dir):
    """All tensors from the safetensors file(s) in a directory, with dtypes."""
    files = sorted(f for f in os.listdir(out_dir) if f.endswith(".safetensors"))
    out = {}
    for fn in files:
        with safe_open(os.path.join(out_dir, fn), framework="pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return files, out


def load_original_manually(out_dir, cfg):
    _, tensors = stored_tensors(out_dir)
    sd = {}
    for k, v in tensors.items():
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue
        sd["transformer." + k] = v
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model = GPT2LMHeadModel(cfg)
    model.set_attn_implementation("eager")
    res = model.load_state_dict(sd, strict=False)
    assert not res.unexpected_keys, res.unexpected_keys
    assert not res.missing_keys, res.missing_keys
    model.tie_weights()
    return model


BUFFER_SUFFIXES = {
    ("attn", "bias"), ("attn", "masked_bias"),            # GPT-2 original files
    ("attention", "bias"), ("attention", "masked_bias"),  # Pythia files
    ("rotary_emb", "inv_freq"),                           # Pythia files
}


def is_buffer_key(k):
    """Non-parameter buffers that some original checkpoints carry (ignored on load)."""
    return tuple(k.split(".")[-2:]) in BUFFER_SUFFIXES


def hf_key(spec, k):
    """Name in the HF model's state_dict of stored tensor `k` (None for buffers)."""
    if is_buffer_key(k):
        return None
    if spec["style"] == "original":
        return "transformer." + k
    if spec["style"] == "opt-original":
        return "model." + k
    if family(spec) == "neox" and k == "embed_out.weight":
        return "lm_head.weight"  # transformers 5 renames embed_out -> lm_head on load (and back on save)
    return k


def _read_safetensors(path):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def save_opt_original(model, out_dir, spec):
    """save_pretrained, then rename the tensors the way the Hub's facebook/opt-* files
    name them: `decoder.*` without the `model.` prefix, and no lm_head (tied)."""
    save_hf(model, out_dir, spec)
    assert not os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
    path = os.path.join(out_dir, "model.safetensors")
    sd, meta = _read_safetensors(path)
    out = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            continue
        assert k.startswith("model.decoder."), k
        out[k[len("model."):]] = v
    save_file(out, path, metadata=meta)


def save_pythia(model, out_dir, spec):
    """save_pretrained (sharded), then add the buffers real Pythia checkpoints carry:
    gpt_neox.layers.N.attention.bias (bool causal mask (1,1,P,P)),
    gpt_neox.layers.N.attention.masked_bias (f32 scalar -1e9) and
    gpt_neox.layers.N.attention.rotary_emb.inv_freq (f32, rotary_dims/2),
    each into the shard holding that layer's query_key_value.weight."""
    save_hf(model, out_dir, spec)
    idx_path = os.path.join(out_dir, "model.safetensors.index.json")
    with open(idx_path, encoding="utf-8") as f:
        index = json.load(f)
    wm = index["weight_map"]
    cfg = model.config
    P = cfg.max_position_embeddings
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rot = int(head_dim * cfg.rope_parameters["partial_rotary_factor"])
    base = cfg.rope_parameters["rope_theta"]
    mask = torch.tril(torch.ones((P, P), dtype=torch.bool)).view(1, 1, P, P)
    # As the original GPT-NeoX / old HF code computes it (float32).
    inv_freq = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.int64).float() / rot))
    assert inv_freq.dtype == torch.float32 and inv_freq.numel() == rot // 2
    per_file = {}
    for i in range(cfg.num_hidden_layers):
        fn = wm[f"gpt_neox.layers.{i}.attention.query_key_value.weight"]
        pre = f"gpt_neox.layers.{i}.attention."
        per_file.setdefault(fn, {}).update({
            pre + "bias": mask.clone(),
            pre + "masked_bias": torch.tensor(-1e9, dtype=torch.float32),
            pre + "rotary_emb.inv_freq": inv_freq.clone(),
        })
    added = 0
    for fn, bufs in per_file.items():
        path = os.path.join(out_dir, fn)
        sd, meta = _read_safetensors(path)
        assert not (set(sd) & set(bufs))
        sd.update(bufs)
        save_file(sd, path, metadata=meta)
        for k, v in bufs.items():
            wm[k] = fn
            added += v.numel() * v.element_size()
    index["metadata"]["total_size"] += added
    with open(idx_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")  # as save_pretrained writes it


def _dump_like_save_pretrained(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def edit_llama_config(spec, out_dir):
    """Right after save_pretrained, before the reference model is loaded.  Only for
    Qwen2: put `sliding_window` back into config.json (transformers 5 writes null
    when use_sliding_window is false, while the Hub's Qwen2/2.5 configs carry a
    number there with use_sliding_window false); the key order and formatting
    stay those of save_pretrained."""
    notes = []
    path = os.path.join(out_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    cfg = json.loads(text)
    assert _dump_like_save_pretrained(cfg) == text, "config.json format changed"
    if family(spec) == "qwen2":
        assert cfg["sliding_window"] is None and cfg["use_sliding_window"] is False, cfg
        cfg["sliding_window"] = spec["sliding_window"]
        with open(path, "w", encoding="utf-8") as f:
            f.write(_dump_like_save_pretrained(cfg))
        notes.append(f"config.json: sliding_window null -> {spec['sliding_window']} "
                     f"(use_sliding_window false, max_window_layers {cfg['max_window_layers']}, "
                     f"layer_types {cfg['layer_types']})")
    return notes


def qwen2_tokenizer_config(tok_path, template):
    """tokenizer_config.json in the layout of the Hub's Qwen2.5 files (chat_template
    inside it, bos_token null), for our tokenizer (eos <|endoftext|>, with ChatML's
    <|im_start|> and <|im_end|> added as special tokens 384 and 385).  transformers 5's save_pretrained would write the template to
    a separate chat_template.jinja instead."""
    with open(tok_path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "bos_token": None,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": SPECIAL,
        "errors": "replace",
        "model_max_length": 48,
        "pad_token": None,
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def finish_llama_dir(spec, out_dir, ref_model, eos_id):
    """Checks of the written config / generation_config (eos lists, rope, sliding
    window) and, for the chat model, its tokenizer_config.json."""
    notes = []
    fam = family(spec)
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    with open(os.path.join(out_dir, "generation_config.json"), encoding="utf-8") as f:
        gen = json.load(f)
    assert cfg["eos_token_id"] == spec.get("eos_token_id", eos_id), cfg["eos_token_id"]
    assert gen["eos_token_id"] == spec.get("generation_eos_token_id", cfg["eos_token_id"]), gen
    assert cfg["rope_parameters"] == spec["rope_parameters"], cfg["rope_parameters"]
    assert "rope_theta" not in cfg and "rope_scaling" not in cfg, sorted(cfg)
    assert ref_model.config.eos_token_id == cfg["eos_token_id"]
    assert ref_model.generation_config.eos_token_id == gen["eos_token_id"]
    rope_keys = sorted(k for k in cfg if "rope" in k)
    window_keys = {k: cfg[k] for k in ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types")
                   if k in cfg}
    notes.append(f"config.json: rope keys {rope_keys} = {cfg['rope_parameters']}; head_dim {cfg.get('head_dim')}; "
                 f"eos_token_id {cfg['eos_token_id']}; generation_config eos_token_id {gen['eos_token_id']}; "
                 f"window keys {window_keys}")
    if fam == "qwen2":
        # Loading gives full attention everywhere (the window is only a number).
        assert ref_model.config.sliding_window is None, ref_model.config.sliding_window
        assert set(ref_model.config.layer_types) == {"full_attention"}
        assert all(layer.self_attn.sliding_window is None for layer in ref_model.model.layers)
        assert ref_model.model.layers[0].self_attn.q_proj.bias is not None
        assert ref_model.model.layers[0].self_attn.o_proj.bias is None
    if fam == "mistral":
        assert ref_model.config.sliding_window is None
    if spec.get("chat_template"):
        tpl_path = os.path.join(CHAT_DIR, spec["chat_template"] + ".jinja")
        with open(tpl_path, encoding="utf-8", newline="") as f:
            template = f.read()
        # Qwen's tokenizers have ChatML's markers as special tokens; ours gets them too
        # (ids 384 and 385, inside the model's 389 rows), so a chat prompt stays short.
        tok_out = os.path.join(out_dir, "tokenizer.json")
        chat_tok = Tokenizer.from_file(tok_out)
        chat_tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
        chat_tok.save(tok_out, pretty=True)
        tc = qwen2_tokenizer_config(tok_out, template)
        with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
        # transformers reads it back as written.
        hf_tok = PreTrainedTokenizerFast.from_pretrained(out_dir)
        assert hf_tok.chat_template == template and hf_tok.bos_token is None and hf_tok.eos_token == SPECIAL
        msgs = [{"role": "user", "content": "Hi"}]
        text = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        notes.append(f"tokenizer_config.json: chat_template {spec['chat_template']}.jinja; "
                     f"apply_chat_template(user 'Hi') = {text!r}")
    return notes


# ----------------------------------------------------------------------------
# float64 exactness of the HF reference + hand-written float64 forwards
# ----------------------------------------------------------------------------
def _eager_attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager_attention_forward without the float32 softmax upcast
    (which in a float64 model rounds the probabilities to float32).  For the
    Llama families the key/value heads are repeated for grouped-query attention
    (`num_key_value_groups`), as their eager_attention_forward does."""
    n_rep = getattr(module, "num_key_value_groups", 1)
    if n_rep > 1:
        key = modeling_llama.repeat_kv(key, n_rep)
        value = modeling_llama.repeat_kv(value, n_rep)
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)  # in the input dtype
    attn_weights = torch.nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _rope_forward_f64(self, x, position_ids):
    """GPTNeoX / Llama / Qwen2 / Mistral RotaryEmbedding.forward with the angles
    computed in float64 (HF computes position * inv_freq and cos/sin in float32,
    then casts)."""
    assert self.inv_freq.dtype == torch.float64 and x.dtype == torch.float64
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos() * self.attention_scaling
    sin = emb.sin() * self.attention_scaling
    self.f64_calls = getattr(self, "f64_calls", 0) + 1
    return cos, sin


def neox_inv_freq_f64(cfg):
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rot = int(head_dim * cfg.rope_parameters["partial_rotary_factor"])
    base = float(cfg.rope_parameters["rope_theta"])
    return 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))


def llama_head_dim(cfg):
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def llama_inv_freq_f64(cfg):
    """The Llama-family rotary inverse frequencies in float64: default RoPE over the
    whole head_dim, or the "llama3" rule (transformers' _compute_llama3_parameters,
    done in float64 instead of float32)."""
    rp = cfg.rope_parameters
    dim = llama_head_dim(cfg)
    assert rp.get("partial_rotary_factor", 1.0) == 1.0, rp
    inv = 1.0 / (float(rp["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if rp["rope_type"] == "default":
        return inv
    assert rp["rope_type"] == "llama3", rp
    factor, lo, hi = float(rp["factor"]), float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
    old = float(rp["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old / lo, old / hi
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, out)


def llama3_frequency_table(cfg):
    """Which inverse frequencies the llama3 rule keeps / divides / blends (for the log)."""
    rp = cfg.rope_parameters
    dim = llama_head_dim(cfg)
    base = 1.0 / (float(rp["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaled = llama_inv_freq_f64(cfg)
    old = float(rp["original_max_position_embeddings"])
    rows, kinds = [], []
    for i, (b, s) in enumerate(zip(base.tolist(), scaled.tolist())):
        wl = 2 * math.pi / b
        if wl < old / rp["high_freq_factor"]:
            kind = "kept"
            assert s == b
        elif wl > old / rp["low_freq_factor"]:
            kind = "divided"
            assert s == b / rp["factor"]
        else:
            kind = "blended"
            assert b / rp["factor"] < s < b
        kinds.append(kind)
        rows.append(f"i={i} wavelen={wl:.2f} inv_freq {b:.6g} -> {s:.6g} ({kind})")
    return rows, kinds


def _rmsnorm_forward_f64(self, hidden_states):
    """Llama/Qwen2/Mistral RMSNorm.forward without the float32 round trip."""
    assert hidden_states.dtype == torch.float64 and self.weight.dtype == torch.float64
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    self.f64_calls = getattr(self, "f64_calls", 0) + 1
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@contextlib.contextmanager
def float64_exact(model):
    """Make a float64 HF model compute everything in float64 (while active):
    - OPT / GPT-NeoX / Llama / Qwen2 / Mistral eager attention: softmax in float64
      instead of float32 (key/value heads repeated for grouped-query attention);
    - GPT-NeoX and Llama-family RoPE: inv_freq recomputed in float64 (with the
      llama3 frequency rule where configured), cos/sin computed in float64;
    - Llama-family RMSNorm: no float32 round trip of the normalized activations.
    GPT-2 and GPT-1 need nothing (their softmax, masks and norms stay in the model
    dtype); the hand-written forwards below check all of it."""
    assert next(model.parameters()).dtype == torch.float64
    saved = [(m, "eager_attention_forward", m.eager_attention_forward)
             for m in (modeling_opt, modeling_gpt_neox, modeling_llama, modeling_qwen2, modeling_mistral)]
    rope_mods = [m for m in model.modules() if hasattr(m, "inv_freq")]
    rope_saved = [(m, m.inv_freq, m.original_inv_freq) for m in rope_mods]
    norm_types = (modeling_llama.LlamaRMSNorm, modeling_qwen2.Qwen2RMSNorm, modeling_mistral.MistralRMSNorm)
    norm_mods = [m for m in model.modules() if isinstance(m, norm_types)]
    llama_rope_types = (modeling_llama.LlamaRotaryEmbedding, modeling_qwen2.Qwen2RotaryEmbedding,
                        modeling_mistral.MistralRotaryEmbedding)
    try:
        for mod, name, _ in saved:
            setattr(mod, name, _eager_attention_f64)
        for m in rope_mods:
            assert m.attention_scaling == 1.0
            if isinstance(m, modeling_gpt_neox.GPTNeoXRotaryEmbedding):
                assert m.rope_type == "default"
                inv = neox_inv_freq_f64(model.config)
            else:
                assert isinstance(m, llama_rope_types), type(m)
                assert m.rope_type in ("default", "llama3"), m.rope_type
                inv = llama_inv_freq_f64(model.config)
            assert inv.shape == m.inv_freq.shape
            m.inv_freq = inv
            m.original_inv_freq = inv.clone()
            m.forward = types.MethodType(_rope_forward_f64, m)
        for m in norm_mods:
            m.forward = types.MethodType(_rmsnorm_forward_f64, m)
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
        for m, inv, orig in rope_saved:
            m.inv_freq, m.original_inv_freq = inv, orig
            if "forward" in m.__dict__:
                del m.forward
        for m in norm_mods:
            if "forward" in m.__dict__:
                del m.forward


def _ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _causal_softmax_attn(q, k, v, scale, window=None):
    """q, k, v: (H, T, d) float64; returns (T, H*d).  With `window`, query i sees
    only keys j with i - window < j <= i (a sliding window of `window` tokens)."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    T = s.shape[-1]
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool))
    if window is not None:
        keep &= ~torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-window)
    s = s.masked_fill(~keep, float("-inf"))
    p = torch.exp(s - s.max(-1, keepdim=True).values)
    p = p / p.sum(-1, keepdim=True)
    o = torch.matmul(p, v)  # (H, T, d)
    return o.transpose(0, 1).reshape(T, -1)


@torch.no_grad()
def handwritten_logits(spec, cfg, sd, ids, window=None):
    """Independent float64 forward pass from the HF-named state dict `sd`
    (written from the architecture descriptions, not calling transformers).
    `window` (Llama families only): apply a sliding attention window."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    fam = family(spec)
    ids = torch.tensor(ids, dtype=torch.long)
    T = len(ids)
    if fam in LLAMA_FAMILIES:
        return _handwritten_llama(cfg, sd, ids, window)
    assert window is None
    if fam == "gpt1":
        g = lambda n: sd["transformer." + n]  # noqa: E731
        H, D = cfg.n_head, cfg.n_embd
        d = D // H
        gelu_tanh = lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # noqa: E731
        x = g("tokens_embed.weight")[ids] + g("positions_embed.weight")[torch.arange(T)]
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            qkv = x @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")  # Conv1D: (in, out)
            q, k, v = [t.reshape(T, H, d).transpose(0, 1) for t in qkv.split(D, dim=-1)]
            a = _causal_softmax_attn(q, k, v, 1.0 / math.sqrt(d))
            a = a @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
            n = _ln(x + a, g(p + "ln_1.weight"), g(p + "ln_1.bias"), cfg.layer_norm_epsilon)  # post-LN
            m = gelu_tanh(n @ g(p + "mlp.c_fc.weight") + g(p + "mlp.c_fc.bias"))
            m = m @ g(p + "mlp.c_proj.weight") + g(p + "mlp.c_proj.bias")
            x = _ln(n + m, g(p + "ln_2.weight"), g(p + "ln_2.bias"), cfg.layer_norm_epsilon)
        return x @ g("tokens_embed.weight").T  # no final LN, tied head
    if fam == "opt":
        g = lambda n: sd["model.decoder." + n]  # noqa: E731
        H, D = cfg.num_attention_heads, cfg.hidden_size
        d = D // H
        lin = lambda x, n: x @ g(n + ".weight").T + g(n + ".bias")  # noqa: E731
        x = g("embed_tokens.weight")[ids]
        if cfg.word_embed_proj_dim != D:
            x = x @ g("project_in.weight").T
        x = x + g("embed_positions.weight")[torch.arange(T) + 2]  # OPT's position offset 2
        pre = cfg.do_layer_norm_before
        for i in range(cfg.num_hidden_layers):
            p = f"layers.{i}."
            ln1 = lambda t: _ln(t, g(p + "self_attn_layer_norm.weight"), g(p + "self_attn_layer_norm.bias"))  # noqa: E731
            ln2 = lambda t: _ln(t, g(p + "final_layer_norm.weight"), g(p + "final_layer_norm.bias"))  # noqa: E731
            h = ln1(x) if pre else x
            q = lin(h, p + "self_attn.q_proj") * d ** -0.5
            k = lin(h, p + "self_attn.k_proj")
            v = lin(h, p + "self_attn.v_proj")
            q, k, v = [t.reshape(T, H, d).transpose(0, 1) for t in (q, k, v)]
            a = lin(_causal_softmax_attn(q, k, v, 1.0), p + "self_attn.out_proj")
            x = x + a
            if not pre:
                x = ln1(x)
            h = ln2(x) if pre else x
            m = lin(torch.relu(lin(h, p + "fc1")), p + "fc2")
            x = x + m
            if not pre:
                x = ln2(x)
        if pre and not cfg._remove_final_layer_norm:
            x = _ln(x, g("final_layer_norm.weight"), g("final_layer_norm.bias"))
        if cfg.word_embed_proj_dim != D:
            x = x @ g("project_out.weight").T
        return x @ g("embed_tokens.weight").T  # tied head
    if fam == "neox":
        g = lambda n: sd["gpt_neox." + n]  # noqa: E731
        H, D = cfg.num_attention_heads, cfg.hidden_size
        d = D // H
        eps = cfg.layer_norm_eps
        lin = lambda x, n: x @ g(n + ".weight").T + g(n + ".bias")  # noqa: E731
        gelu = lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))  # noqa: E731
        inv = neox_inv_freq_f64(cfg)
        rot = 2 * inv.numel()
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1)  # (T, rot)
        sin = torch.cat([ang.sin(), ang.sin()], -1)

        def rope(t):  # (H, T, d): rotate_half on the first `rot` dims
            r, rest = t[..., :rot], t[..., rot:]
            r1, r2 = r[..., : rot // 2], r[..., rot // 2:]
            return torch.cat([r * cos + torch.cat([-r2, r1], -1) * sin, rest], -1)

        x = g("embed_in.weight")[ids]
        for i in range(cfg.num_hidden_layers):
            p = f"layers.{i}."
            h = _ln(x, g(p + "input_layernorm.weight"), g(p + "input_layernorm.bias"), eps)
            qkv = lin(h, p + "attention.query_key_value").reshape(T, H, 3 * d).transpose(0, 1)
            q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
            a = lin(_causal_softmax_attn(rope(q), rope(k), v, d ** -0.5), p + "attention.dense")
            mlp = lambda t: lin(gelu(lin(t, p + "mlp.dense_h_to_4h")), p + "mlp.dense_4h_to_h")  # noqa: E731
            ln2 = lambda t: _ln(t, g(p + "post_attention_layernorm.weight"), g(p + "post_attention_layernorm.bias"), eps)  # noqa: E731
            if cfg.use_parallel_residual:
                x = x + a + mlp(ln2(x))
            else:
                y = x + a
                x = y + mlp(ln2(y))
        x = _ln(x, g("final_layer_norm.weight"), g("final_layer_norm.bias"), eps)
        return x @ sd["lm_head.weight"].T  # untied (embed_out in the files)
    raise ValueError(fam)


def _llama3_scaled_inv_freq(inv, rp):
    """Meta's reference `apply_scaling` for Llama 3.1 rotary frequencies, per entry:
    wavelength < original_ctx / high_freq_factor: kept; > original_ctx /
    low_freq_factor: divided by factor; otherwise a linear blend of the two by
    smooth = (original_ctx / wavelength - low_freq_factor) / (high - low)."""
    old = rp["original_max_position_embeddings"]
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen < old / rp["high_freq_factor"]:
            out.append(f)
        elif wavelen > old / rp["low_freq_factor"]:
            out.append(f / rp["factor"])
        else:
            smooth = (old / wavelen - rp["low_freq_factor"]) / (rp["high_freq_factor"] - rp["low_freq_factor"])
            out.append((1 - smooth) * f / rp["factor"] + smooth * f)
    return out


def _handwritten_llama(cfg, sd, ids, window):
    """Llama / Qwen2 / Mistral: pre-RMSNorm blocks, grouped-query attention with
    rotary (rotate-half pairing, dims i and i + d/2) on q and k, optional q/k/v
    biases (Qwen2), gated SiLU MLP, final RMSNorm, lm_head (tied or not)."""
    T = len(ids)
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.head_dim if getattr(cfg, "head_dim", None) else cfg.hidden_size // H
    eps = cfg.rms_norm_eps
    g = lambda n: sd["model." + n]  # noqa: E731

    def lin(x, n):
        y = x @ g(n + ".weight").T
        return y + g(n + ".bias") if ("model." + n + ".bias") in sd else y

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w

    silu = lambda x: x / (1 + torch.exp(-x))  # noqa: E731
    rp = cfg.rope_parameters
    inv = [1.0 / (float(rp["rope_theta"]) ** (2 * i / d)) for i in range(d // 2)]
    if rp["rope_type"] == "llama3":
        inv = _llama3_scaled_inv_freq(inv, rp)
    else:
        assert rp["rope_type"] == "default", rp
    ang = torch.arange(T, dtype=torch.float64)[:, None] * torch.tensor(inv, dtype=torch.float64)[None, :]
    cos, sin = ang.cos(), ang.sin()  # (T, d/2)

    def rope(t):  # (heads, T, d): pairs (i, i + d/2)
        a, b = t[..., : d // 2], t[..., d // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    x = g("embed_tokens.weight")[ids]
    group = H // KV
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        h = rms(x, g(p + "input_layernorm.weight"))
        q = lin(h, p + "self_attn.q_proj").reshape(T, H, d).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").reshape(T, KV, d).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").reshape(T, KV, d).transpose(0, 1)
        q, k = rope(q), rope(k)
        kv_of = torch.tensor([j // group for j in range(H)])  # query head j reads kv head j // group
        a = _causal_softmax_attn(q, k[kv_of], v[kv_of], d ** -0.5, window)
        x = x + lin(a, p + "self_attn.o_proj")
        h = rms(x, g(p + "post_attention_layernorm.weight"))
        m = lin(silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = x + m
    x = rms(x, g("norm.weight"))
    return x @ sd["lm_head.weight"].T


# ----------------------------------------------------------------------------
# Reference computations (float64)
# ----------------------------------------------------------------------------
@torch.no_grad()
def logits_for(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x, use_cache=False).logits[0]


@torch.no_grad()
def greedy(model, prompt, n_new):
    ids = list(prompt)
    new, margins = [], []
    for _ in range(n_new):
        last = logits_for(model, ids)[-1]
        top2 = torch.topk(last, 2)
        nxt = int(torch.argmax(last))
        assert nxt == int(top2.indices[0])
        margins.append(float(top2.values[0] - top2.values[1]))
        new.append(nxt)
        ids.append(nxt)
    return new, margins


@torch.no_grad()
def pick_greedy_prompt(model, prompts, min_margin=GREEDY_MIN_MARGIN):
    """The first of `prompts` whose greedy continuation has clear margins (>= min_margin) and
    varied ids, else the best of them (clear margins first, then more distinct ids, then the
    larger smallest margin). Returns (index of the prompt, greedy ids, margins)."""
    best = None
    for k, gp in enumerate(prompts):
        g_ids, g_margins = greedy(model, gp, GREEDY_NEW)
        good = min(g_margins) >= min_margin
        varied = len(set(g_ids)) >= GREEDY_MIN_DISTINCT
        key = (good and varied, good, len(set(g_ids)), min(g_margins))
        if best is None or key > best[0]:
            best = (key, k, g_ids, g_margins)
        if good and varied:
            break
    _, k, g_ids, g_margins = best
    return k, g_ids, g_margins


def greedy_via_generate(model, prompt, n_new):
    x = torch.tensor([prompt], dtype=torch.long)
    eos = model.config.eos_token_id
    pad = eos[0] if isinstance(eos, (list, tuple)) else eos
    out = model.generate(
        x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, min_new_tokens=n_new,
        do_sample=False, num_beams=1, repetition_penalty=1.0, pad_token_id=pad,
    )
    return out[0, len(prompt):].tolist()


@torch.no_grad()
def perplexity(model, tok, text, ctx):
    enc = tok.encode(text, add_special_tokens=False)
    ids = enc.ids
    # The byte-level pieces must reproduce the text exactly.
    assert b"".join(token_bytes(t) for t in enc.tokens) == text.encode("utf-8")
    windows = [ids[i:i + ctx] for i in range(0, len(ids), ctx)]
    windows = [w for w in windows if len(w) >= 2]
    vocab = tok.get_vocab()
    inv = {v: k for k, v in vocab.items()}
    per_window = []
    for w in windows:
        lg = logits_for(model, w)
        logp = torch.log_softmax(lg, dim=-1)
        tgt = torch.tensor(w[1:], dtype=torch.long)
        nll = -logp[:-1].gather(1, tgt[:, None])[:, 0]
        nbytes = sum(len(token_bytes(inv[t])) for t in w[1:])
        per_window.append((float(nll.sum()), len(w) - 1, nbytes))
    total_nll = math.fsum(p[0] for p in per_window)
    n_scored = sum(p[1] for p in per_window)
    n_bytes = sum(p[2] for p in per_window)
    c2_nll = math.fsum(p[0] for p in per_window[:2])
    c2_n = sum(p[1] for p in per_window[:2])
    mean = total_nll / n_scored
    return {
        "ppl_context": ctx,
        "ppl_tokens_scored": n_scored,
        "ppl_nll_mean": mean,
        "ppl_perplexity": math.exp(mean),
        "ppl_bits_per_byte": (total_nll / math.log(2.0)) / n_bytes,
        "ppl_chunks2_nll_mean": c2_nll / c2_n,
        "ppl_chunks2_tokens_scored": c2_n,
    }, len(ids), len(windows)


# ----------------------------------------------------------------------------
def build_model(spec, tok, tok_path, heldout, eos_id, prompt_ids, greedy_prompts):
    name = spec["name"]
    fam = family(spec)
    cls = MODEL_CLASSES[fam]
    out_dir = os.path.join(FIX, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    cfg = make_config(spec, eos_id)
    check_shapes(spec, cfg)
    torch.manual_seed(spec["seed"])
    model = cls(cfg)
    init_weights(model, spec["seed"], fam)
    model = model.to(spec["dtype"])
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())

    notes = []
    if fam in LLAMA_FAMILIES:
        if cfg.rope_parameters["rope_type"] == "llama3":
            rows, kinds = llama3_frequency_table(cfg)
            notes += [f"llama3 rope: {r}" for r in rows]
            assert {"kept", "divided", "blended"} <= set(kinds), kinds
            hf_inv = type(model.model.rotary_emb)(cfg).inv_freq  # float32 (the model's copy is cast)
            assert hf_inv.dtype == torch.float32
            rel = float(((hf_inv.double() - llama_inv_freq_f64(cfg)) / llama_inv_freq_f64(cfg)).abs().max())
            notes.append(f"llama3 rope: HF float32 inv_freq vs float64 rule: max rel diff {rel:.3g}")
            assert rel < 1e-6, rel
        if "generation_eos_token_id" in spec:
            # An extra stop id only in generation_config.json (like Llama 3 <|eom_id|>).
            model.generation_config.eos_token_id = list(spec["generation_eos_token_id"])
    if spec["style"] == "original":
        save_original(model, out_dir, spec)
        ref_model = load_original_manually(out_dir, make_config(spec, eos_id))
        # Also see what from_pretrained makes of it (informational only).
        try:
            hf_model, info, msgs = load_with_report(out_dir)
            hf_model = hf_model.to(torch.float64)
            ref64 = ref_model.to(torch.float64)
            a = logits_for(hf_model.eval(), prompt_ids)
            b = logits_for(ref64.eval(), prompt_ids)
            notes.append(
                f"from_pretrained: missing={sorted(info['missing_keys'])} "
                f"unexpected={sorted(info['unexpected_keys'])} "
                f"mismatched={sorted(info['mismatched_keys'])} "
                f"logits_bitwise_equal_to_manual_load={torch.equal(a, b)} "
                f"max_abs_diff={float((a - b).abs().max()):.3g}"
            )
            for m in msgs:
                if m.strip():
                    notes.append("from_pretrained log: " + " ".join(m.split())[:300])
        except Exception as e:  # noqa: BLE001
            notes.append(f"from_pretrained failed: {type(e).__name__}: {e}")
    else:
        if spec["style"] == "hf":
            save_hf(model, out_dir, spec)
        elif spec["style"] == "opt-original":
            save_opt_original(model, out_dir, spec)
        elif spec["style"] == "pythia":
            save_pythia(model, out_dir, spec)
        else:
            raise ValueError(spec["style"])
        if fam in LLAMA_FAMILIES:
            notes += edit_llama_config(spec, out_dir)
        ref_model, info, msgs = load_with_report(out_dir, cls=cls)
        # Only the extra buffers of the Pythia-style files may be left unused.
        unexpected = [k for k in info["unexpected_keys"] if not is_buffer_key(k)]
        bad = [m for m in msgs if ("missing" in m.lower() or "not initialized" in m.lower()
                                   or "newly" in m.lower()
                                   or ("unexpected" in m.lower() and spec["style"] != "pythia"))]
        if info["missing_keys"] or unexpected or info["mismatched_keys"] or bad:
            raise RuntimeError(f"{name}: bad load: {info} {bad}")
        if info["unexpected_keys"]:
            notes.append(f"from_pretrained ignored (unexpected) keys: {sorted(info['unexpected_keys'])}")
        for m in msgs:
            if m.strip():
                notes.append("from_pretrained log: " + " ".join(m.split())[:300])

    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))
    if fam in LLAMA_FAMILIES:
        notes += finish_llama_dir(spec, out_dir, ref_model, eos_id)

    # Check what is actually in the file(s).
    files, tensors = stored_tensors(out_dir)
    dtypes = sorted({str(v.dtype) for k, v in tensors.items() if not is_buffer_key(k)})
    assert dtypes == [str(spec["dtype"])], (name, dtypes)
    head_keys = [k for k in tensors if hf_key(spec, k) == "lm_head.weight"]
    if not spec["tie"]:
        assert len(head_keys) == 1, f"{name}: untied output head missing from file"
        in_emb = ref_model.get_input_embeddings().weight
        assert not torch.equal(tensors[head_keys[0]], in_emb)
    else:
        assert not head_keys, head_keys
    if "max_shard_size" in spec:
        assert os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
        assert len(files) >= 2, files
        with open(os.path.join(out_dir, "model.safetensors.index.json")) as f:
            index = json.load(f)
        assert set(index["weight_map"]) == set(tensors), name
        assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in tensors.values())

    # The reference model must hold exactly the stored values, and every
    # parameter must come from the file(s).
    ref_sd = ref_model.state_dict()
    covered = set()
    for k, v in tensors.items():
        hk = hf_key(spec, k)
        if hk is None:
            continue
        assert torch.equal(ref_sd[hk], v), k
        covered.add(hk)
    for pname, _ in ref_model.named_parameters():  # tied lm_head appears only once
        assert pname in covered, f"{name}: parameter {pname} not in the file(s)"
    out_w = ref_model.get_output_embeddings().weight
    in_w = ref_model.get_input_embeddings().weight
    if not spec["tie"]:
        assert out_w.data_ptr() != in_w.data_ptr()
    else:
        assert torch.equal(out_w, in_w)
    if fam == "opt":
        assert ref_model.model.decoder.embed_positions.offset == 2
        assert ref_model.model.decoder.embed_positions.weight.shape[0] == spec["n_positions"] + 2
        assert (ref_model.model.decoder.final_layer_norm is None) == (not spec["do_layer_norm_before"])
        assert (ref_model.model.decoder.project_in is None) == (spec["word_embed_proj_dim"] == spec["hidden_size"])

    ref_model = ref_model.to(torch.float64).eval()
    ref_model.set_attn_implementation("eager")
    assert ref_model.config._attn_implementation == "eager"

    if fam != "gpt2":
        # Float64 check: HF (made float64-exact) vs an independent hand-written
        # float64 forward from the stored tensors; also report what stock HF gives.
        sd64 = {hf_key(spec, k): v for k, v in tensors.items() if hf_key(spec, k) is not None}
        if spec["tie"]:
            sd64["lm_head.weight"] = in_w.detach()
        hand = handwritten_logits(spec, cfg, sd64, prompt_ids)
        stock = logits_for(ref_model, prompt_ids)
        with float64_exact(ref_model):
            exact = logits_for(ref_model, prompt_ids)
            if fam in ("neox",) + LLAMA_FAMILIES:
                rot = ref_model.gpt_neox.rotary_emb if fam == "neox" else ref_model.model.rotary_emb
                cos, sin = rot(exact[None, :, :1].to(torch.float64), torch.arange(5)[None])
                assert cos.dtype == torch.float64 and sin.dtype == torch.float64
                assert rot.f64_calls >= 2
            if fam in LLAMA_FAMILIES:
                assert ref_model.model.norm.f64_calls >= 1
        d_exact = float((exact - hand).abs().max())
        d_stock = float((stock - hand).abs().max())
        notes.append(f"float64 check: max|HF_f64exact - handwritten|={d_exact:.3g} "
                     f"max|HF_stock_f64 - handwritten|={d_stock:.3g} (logits max |.|={float(hand.abs().max()):.3g})")
        assert d_exact < 1e-10, (name, d_exact)
        if fam in LLAMA_FAMILIES:
            # Also a full context window (rotary at every position up to the limit).
            win = tok.encode(heldout, add_special_tokens=False).ids[: spec["n_positions"]]
            hand_w = handwritten_logits(spec, cfg, sd64, win)
            with float64_exact(ref_model):
                exact_w = logits_for(ref_model, win)
            d_w = float((exact_w - hand_w).abs().max())
            notes.append(f"float64 check on a full {len(win)}-token window: max|HF_f64exact - handwritten|={d_w:.3g}")
            assert d_w < 1e-10, (name, d_w)
            if spec.get("sliding_window"):
                slid = handwritten_logits(spec, cfg, sd64, win, window=spec["sliding_window"])
                notes.append(
                    f"sliding_window {spec['sliding_window']} is OFF (use_sliding_window false): "
                    f"the references use full attention; had it been applied, the last-position logits "
                    f"of that window would move by up to {float((slid - hand_w)[-1].abs().max()):.3g}"
                )

    with float64_exact(ref_model):
        logits = logits_for(ref_model, prompt_ids)
        k, greedy_ids, margins = pick_greedy_prompt(ref_model, greedy_prompts)
        greedy_prompt = greedy_prompts[k]
        try:
            gen_ids = greedy_via_generate(ref_model, greedy_prompt, GREEDY_NEW)
            if gen_ids != greedy_ids:
                raise RuntimeError(f"{name}: generate() {gen_ids} != manual greedy {greedy_ids}")
            notes.append("generate() cross-check: identical greedy ids")
        except RuntimeError:
            raise
        except Exception as e:  # noqa: BLE001
            notes.append(f"generate() cross-check skipped: {type(e).__name__}: {e}")
        ppl, n_ids, n_windows = perplexity(ref_model, tok, heldout, spec["n_positions"])

    ref = {
        "prompt_ids": list(prompt_ids),
        "logits": [[float(v) for v in row] for row in logits.tolist()],
        "greedy_prompt_ids": list(greedy_prompt),
        "greedy_ids": greedy_ids,
        "greedy_margins": margins,
    }
    ref.update(ppl)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")

    summary = (
        f"{name:18s} params={n_params:7d} dtype={str(spec['dtype']).replace('torch.', ''):8s} "
        f"files={len(files)} logits_std={float(logits.std()):.3f} "
        f"greedy_prompt={greedy_prompt} min_greedy_margin={min(margins):.4f} ppl={ppl['ppl_perplexity']:.3f} "
        f"bpb={ppl['ppl_bits_per_byte']:.4f} heldout_ids={n_ids} windows={n_windows}"
    )
    return summary, notes


def quiet_and_seeded():
    """The start of every fixture tool's run: one torch thread, no progress bars or transformers
    warnings, and torch's and numpy's generators seeded, so that a rerun writes the same files."""
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    np.random.seed(0)


def parse_args(argv):
    names = [m["name"] for m in MODELS]
    ap = argparse.ArgumentParser(description="Generate the wgpt test fixtures (see the module docstring).")
    ap.add_argument(
        "--only", nargs="+", metavar="NAME", choices=names,
        help="regenerate only these model fixtures; tokenizer.json and heldout_slice.txt "
             "are then read from tests/fixtures/ as they are (not rewritten). "
             f"Names: {', '.join(names)}",
    )
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    np.random.seed(0)
    os.makedirs(FIX, exist_ok=True)

    pre_notes = []
    if args.only:
        tok, tok_path, heldout, start, pre_notes = load_tokenizer_and_slice()
        specs = [m for m in MODELS if m["name"] in args.only]
    else:
        tok, tok_path, heldout, start = build_tokenizer_and_slice()
        specs = MODELS
    eos_id = tok.token_to_id(SPECIAL)
    assert eos_id is not None
    prompt_ids = fixed_ids(tok, PROMPT_TEXT, PROMPT_LEN, eos_id)
    greedy_prompts = [fixed_ids(tok, t, GREEDY_PROMPT_LEN, eos_id) for t in GREEDY_PROMPT_TEXTS]
    print(f"tokenizer: vocab={tok.get_vocab_size()} eos_id={eos_id} heldout_start_byte={start}")
    print(f"prompt_ids={prompt_ids}")
    for n in pre_notes:
        print(n)

    summaries, all_notes = [], []
    for spec in specs:
        s, notes = build_model(spec, tok, tok_path, heldout, eos_id, prompt_ids, greedy_prompts)
        summaries.append(s)
        all_notes += [f"[{spec['name']}] {n}" for n in notes]
    for n in all_notes:
        print(n)
    for s in summaries:
        print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
