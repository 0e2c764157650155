#!/usr/bin/env python3
"""Gemma 3 (text) and Gemma 2 golden fixtures: Hub-layout HF checkpoints with a
Gemma-layout SentencePiece tokenizer, float64 HF references checked against a
hand-written float64 forward, and GGUF files made by llama.cpp's own converter
with references of their own.

Run from the repository root (needs the packages in tools/requirements.txt and a
llama.cpp source tree for convert_hf_to_gguf.py + conversion/ + gguf-py; no
llama.cpp build):

    python tools/make_gemma_fixtures.py --llama-cpp /work/llama.cpp
    python tools/make_gemma_fixtures.py --llama-cpp DIR --only gemma3      # or gemma2
    python tools/make_gemma_fixtures.py --llama-cpp DIR --gguf-semantics hf  # see GGUF below

Deterministic (fixed seeds, one torch thread, SentencePiece trained with
num_threads=1).  Reuses tools/make_fixtures.py (greedy / generate helpers),
tools/make_gguf_fixtures.py (converter wrapper, GGUF reader) and
tools/make_real_fixtures.py (corpus, SentencePiece recipe, BOS perplexity
protocol).  Reads tools/data/tinyshakespeare.txt, tests/fixtures/heldout_slice.txt,
tests/fixtures/chat/gemma3.jinja (if it exists) and, from the llama.cpp tree,
models/templates/google-gemma-2-2b-it.jinja.  Scratch files go to --work-dir.

Files written (and nothing else):

tests/fixtures/tiny-gemma3-bf16/   Gemma3ForCausalLM, model_type "gemma3_text"
    config.json   exactly what transformers 5's save_pretrained writes for a
                  Gemma3TextConfig given google/gemma-3-1b-it's values:
                  eos_token_id [1, 106], bos 2, pad 0, hidden_activation
                  gelu_pytorch_tanh, max_position_embeddings 32768,
                  rms_norm_eps 1e-6, attn_logit_softcapping null,
                  final_logit_softcapping null, cache_implementation "hybrid",
                  tie_word_embeddings true, dtype "bfloat16",
                  sliding_window_pattern 4 (+ "_sliding_window_pattern" 4, which
                  transformers 5 adds) and layer_types [sliding, sliding,
                  sliding, full]; rope_theta 1e6 / rope_local_base_freq 1e4 /
                  rope_scaling {"rope_type": "linear", "factor": 8.0} (as
                  gemma-3-4b has) are written by transformers 5 as ONE
                  per-layer-type dict: rope_parameters = {"full_attention":
                  {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                  "sliding_attention": {"rope_type": "default", "rope_theta":
                  1e4}}.  Tiny sizes / traps: hidden 48 (sqrt(48) = 6.9282 is
                  6.9375 in bf16), 4 heads of head_dim 32 (4 * 32 != 48),
                  1 kv head, query_pre_attn_scalar 24 (!= head_dim),
                  sliding_window 8 (< the prompts and the perplexity windows),
                  intermediate 136, vocab 512.
    generation_config.json  as gemma-3-1b-it's: bos 2, cache_implementation
                  hybrid, do_sample true, eos [1, 106], pad 0, top_k 64,
                  top_p 0.95.
    model.safetensors  bf16, random (seeded), tied head (no lm_head).  Every norm
                  weight (input_layernorm, post_attention_layernorm,
                  pre_feedforward_layernorm, post_feedforward_layernorm,
                  self_attn.q_norm / k_norm) is w = 0.3 * N(0, 1): Gemma's
                  RMSNorm multiplies by (1 + w); model.norm is 2 + 0.3 N(0, 1)
                  (1 + w ~ 3: with a tied head the logit scale is the
                  embedding's, and a larger embedding makes the random model
                  predict its input token again and again).  Embeddings
                  N(0, 0.08^2), projections N(0, 0.15^2).
    tokenizer.model, tokenizer.json, tokenizer_config.json   see Tokenizer.
    reference.json  see References.

tests/fixtures/tiny-gemma2-f32/    Gemma2ForCausalLM, model_type "gemma2"
    config.json   what save_pretrained writes for google/gemma-2-2b-it's
                  values: attn_logit_softcapping 50.0, final_logit_softcapping
                  30.0, eos [1, 107], bos 2, pad 0, hidden_act and
                  hidden_activation gelu_pytorch_tanh, max_position_embeddings
                  8192, rms_norm_eps 1e-6, cache_implementation "hybrid",
                  rope_theta 10000 (written as rope_parameters {"rope_type":
                  "default", "rope_theta": 10000.0}), layer_types alternating
                  [sliding, full, sliding, full], sliding_window 8 (4096 in the
                  real model), query_pre_attn_scalar 16 (= head_dim, as in
                  gemma-2-2b; see GGUF for why not 24), dtype float32.  hidden
                  64, 4 heads / 2 kv heads of 16, intermediate 136, vocab 512.
    generation_config.json  as gemma-2-2b-it's: bos 2, cache_implementation
                  hybrid, eos [1, 107], pad 0.
    model.safetensors  f32, random (seeded), tied.  SCALED so that both soft-caps
                  bind: q_proj / k_proj N(0, 1.0^2) (pre-cap attention scores of
                  the visible (query, key) pairs of the prompt + one 48-token
                  window: |s| > 25 for 71%, > 50 for 46%, max ~325) and
                  model.norm.weight = 30 + 0.3 N(0, 1) (1 + w ~ 31: pre-cap
                  final logits |l| > 15 for 45% of (position, vocab) entries,
                  > 30 for 13%, max ~88); the script prints the fractions.
                  Greedy margins stay >= 0.05 (the chosen prompt: 0.136); the
                  price is a perplexity of ~1.5e13 (confident random model).
                  Other norms 0.3 N(0, 1), embeddings N(0, 0.08^2), other
                  projections N(0, 0.15^2).
    tokenizer.model, tokenizer.json, tokenizer_config.json, reference.json.

tests/fixtures/gguf/tiny-gemma3-f32.gguf (+ .reference.json)
tests/fixtures/gguf/tiny-gemma2-f32.gguf (+ .reference.json)
    convert_hf_to_gguf.py <copy of the fixture dir named tiny-gemma3-f32 /
    tiny-gemma2-f32> --outtype f32 (through make_gguf_fixtures' wrapper, whose
    patches do not touch the Gemma classes).  The script prints every
    gemma3.* / gemma2.* / general.* / tokenizer.ggml.* key (token arrays
    summarized) and every tensor with shape and type.
tests/fixtures/gguf/manifest.json   entries "tiny-gemma3" and "tiny-gemma2" (the
    others are kept; read-modify-write at the end of the run).
(tests/fixtures/gguf/README.md has a hand-written paragraph about these files.)

Tokenizer (both fixtures; no Hub tokenizer is downloaded)
    Gemma's special-token layout cannot be had from tiny-sp-llama-f32's
    tokenizer.model (<unk> 0, <s> 1, </s> 2), so a SentencePiece BPE model is
    trained the same way (tools/make_real_fixtures.py's SP_TRAIN recipe and
    corpus: vocab 512, byte_fallback, split_digits, identity normalization,
    remove_extra_whitespaces false, allow_whitespace_only_pieces) but with
    Gemma's settings: add_dummy_prefix FALSE, <pad> 0, <eos> 1, <bos> 2, <unk> 3,
    then user-defined pieces as in the real vocabularies:
      Gemma 3: <mask> 4, [multimodal] 5, <unused0>..<unused98> 6..104,
               <start_of_turn> 105, <end_of_turn> 106
      Gemma 2: <mask> 4, <2mass> 5, [@BOS@] 6, <unused0>..<unused98> 7..105,
               <start_of_turn> 106, <end_of_turn> 107
    then the 256 <0xNN> byte pieces and 149 / 148 learned pieces.
    tokenizer.json is what transformers 5 converts tokenizer.model into
    (GemmaTokenizer: normalizer Replace(" " -> "▁"), pre_tokenizer
    Split(" ", merged_with_previous), BPE byte_fallback, decoder Replace + ByteFallback
    + Fuse, post_processor TemplateProcessing "<bos> $A"), with <start_of_turn> /
    <end_of_turn> marked special.  tokenizer_config.json in the Hub's (4.x)
    Gemma layout: add_bos_token true, add_eos_token false, added_tokens_decoder
    (ids 0..106 / 0..107), additional_special_tokens [<start_of_turn>,
    <end_of_turn>], bos/eos/pad/unk, clean_up_tokenization_spaces false,
    model_max_length 1e30, sp_model_kwargs {}, spaces_between_special_tokens
    false, tokenizer_class GemmaTokenizer, use_default_system_prompt false,
    chat_template: Gemma 3 tests/fixtures/chat/gemma3.jinja if present (else
    none), Gemma 2 llama.cpp's google-gemma-2-2b-it.jinja.  (The real Gemma 3
    tokenizer also has image tokens at 255999 / 256000 / 262144: left out.)

References (reference.json; the GGUF references the same plus gguf_file,
tensor_types and reference_semantics)
    The keys of tools/make_real_fixtures.py: prompt_text / prompt_ids (WITH the
    BOS), logits at every prompt position, greedy_prompt_text / _ids, greedy_ids,
    greedy_margins (12 argmax steps, cross-checked with generate()),
    bos_token_id, ppl_* with the BOS protocol on heldout_slice.txt and
    ppl_context 48 (windows [BOS] + 47 text tokens), ppl_chunks2_*,
    ppl_bytes_rule.
    HF transformers in float64 (model.double()) with attn_implementation
    "eager" (sdpa / flex ignore softcapping) and these patches while computing:
      - Gemma3RMSNorm / Gemma2RMSNorm: no float32 round trip (x * rsqrt(mean x^2
        + eps) * (1 + w) in float64);
      - rotary: inv_freq recomputed in float64 per layer type (default, or
        linear: / factor) and cos/sin in float64 (HF: float32);
      - eager attention (modeling_gemma3 / modeling_gemma2): softmax in float64
        (HF: float32), soft-cap tanh in float64; it also records each layer's
        mask, which the script checks against the rule: key j visible to
        query i iff i - sliding_window < j <= i on sliding layers, j <= i on
        full layers (masking_utils.sliding_window_overlay: kv_idx > q_idx -
        sliding_window; llama.cpp's is_masked_swa, STANDARD: masked iff
        p1 - p0 >= n_swa: the same rule);
      - the embedding normalizer, a non-persistent buffer multiplied in the
        weights' dtype: set to bf16(sqrt(48)) = 6.9375 for the bf16 Gemma 3
        checkpoint (what HF computes in bf16; the embedding x normalizer product
        itself is NOT rounded), f32(sqrt(64)) = 8 for Gemma 2.
    Checked against a hand-written float64 forward (below, no transformers):
    max |HF - hand-written| < 1e-10 on the prompt and on a full 48-token window.
    x = emb[ids] * normalizer; per layer: h = N_in(x); q, k, v; (Gemma 3: q, k =
    per-head N_q / N_k); rotary (rotate-half; local base on sliding layers,
    global base + linear factor on full layers); s = q.k * query_pre_attn_scalar
    ^-0.5; (Gemma 2: s = 50 tanh(s / 50)); causal + window mask; softmax;
    att = o_proj; x += N_post_attn(att); h = N_pre_ff(x); x += N_post_ff(down(
    gelu_tanh(gate h) * up h)); final N; logits = h emb^T; (Gemma 2: 30 tanh(l /
    30)); every N(x) = x / sqrt(mean x^2 + 1e-6) * (1 + w).

GGUF references
    Every tensor read back (gguf.quants.dequantize; all F32), the converter's
    transforms undone (norm weights are stored as 1 + w: w = stored - 1 in
    float64; it adds the 1 in float32 after casting bf16 to f32), loaded into a
    float64 HF model.  The GGUF cannot express everything of config.json, so
    by default (--gguf-semantics llama.cpp) the HF config of the reference is
    derived from the GGUF metadata with llama.cpp's runtime rules
    (src/models/gemma3.cpp, gemma2.cpp, llama-model.cpp, llama-hparams.cpp),
    and the reference is what llama.cpp computes for the file (in float64):
      - embedding normalizer sqrtf(n_embd) in f32 (Gemma 3: 6.928203105926514,
        not bf16-rounded; Gemma 2: 8);
      - layer types: {arch}.attention.sliding_window_pattern if present (an
        array of bools per layer, or a period n), else llama.cpp's default
        period (gemma3 6, gemma2 2): layer il is sliding iff il % n < n - 1.
        The converter writes no pattern key for either architecture, so the
        4-layer Gemma 3 GGUF runs ALL FOUR layers as sliding in llama.cpp
        (period 6), unlike the HF fixture (layer 3 full); Gemma 2's alternation
        matches;
      - attention scale: 1 / sqrt(key_length), except 1 / sqrt(n_embd / n_head)
        for the 27B layer counts (gemma3: 62, gemma2: 46); query_pre_attn_scalar
        is not in the GGUF.  Gemma 3 fixture: 1/sqrt(32), HF: 1/sqrt(24);
        Gemma 2 fixture: 16 both ways (why it uses 16);
      - rope: full layers {arch}.rope.freq_base (+ rope.scaling.factor,
        linear), sliding layers rope.freq_base_swa with scale 1 (gemma3) /
        the full-layer base and scale (gemma2);
      - sliding window {arch}.attention.sliding_window; soft-caps from
        attn_logit_softcapping / final_logit_softcapping.
    reference_semantics in the reference records every such choice.  With
    --gguf-semantics hf the reference uses the fixture's config.json instead
    (only the normalizer stays llama.cpp's).  The GGUF's weights are checked
    against the checkpoint: equal exactly except the norms (stored - 1 vs w,
    difference printed).
"""

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import shutil
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (greedy / generate helpers, loader)
import make_gguf_fixtures as mgf  # noqa: E402  (converter wrapper, GGUF reader)
import make_real_fixtures as mrf  # noqa: E402  (corpus, SentencePiece recipe, BOS perplexity)

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig, AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig,
)
from transformers.models.gemma2 import modeling_gemma2  # noqa: E402
from transformers.models.gemma3 import modeling_gemma3  # noqa: E402

FIX = mf.FIX
GGUF_OUT = os.path.join(FIX, "gguf")
HELDOUT = os.path.join(FIX, "heldout_slice.txt")
GEMMA3_TEMPLATE = os.path.join(FIX, "chat", "gemma3.jinja")
GEMMA2_TEMPLATE = os.path.join("models", "templates", "google-gemma-2-2b-it.jinja")  # in the llama.cpp tree

PPL_CONTEXT = 48
PROMPT_TEXT = mrf.PROMPT_TEXT  # "ROMEO:\nBut soft, what light"
SP_VOCAB = 512
UNUSED = [f"<unused{i}>" for i in range(99)]
TURN = ["<start_of_turn>", "<end_of_turn>"]
NORM_STD = 0.3  # Gemma norm weights w (RMSNorm multiplies by 1 + w)

GEMMA3 = dict(
    key="gemma3", name="tiny-gemma3-bf16", gguf_name="tiny-gemma3-f32", gguf_arch="gemma3",
    cls=Gemma3ForCausalLM, dtype=torch.bfloat16, seed=3301,
    user_symbols=["<mask>", "[multimodal]"] + UNUSED + TURN,  # <start_of_turn> 105, <end_of_turn> 106
    eos=[1, 106], template=("fixture", GEMMA3_TEMPLATE),
    config=dict(
        hidden_size=48, intermediate_size=136, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=24, sliding_window=8,
        sliding_window_pattern=4, max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_theta=1000000.0, rope_local_base_freq=10000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
        hidden_activation="gelu_pytorch_tanh", attn_logit_softcapping=None, final_logit_softcapping=None,
        cache_implementation="hybrid", tie_word_embeddings=True, attention_bias=False,
        attention_dropout=0.0, initializer_range=0.02, use_cache=True,
    ),
    expect_layer_types=["sliding_attention"] * 3 + ["full_attention"],
    init=dict(emb=0.08, linear=0.15, qk=0.15, final_norm_mean=2.0),
    generation_config={
        "bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": True, "eos_token_id": [1, 106],
        "pad_token_id": 0, "top_k": 64, "top_p": 0.95, "transformers_version": "4.50.0.dev0",
    },
    # google/gemma-3-1b-it config.json keys (transformers 4.50.0.dev0).
    hub_keys=[
        "architectures", "attention_bias", "attention_dropout", "attn_logit_softcapping", "bos_token_id",
        "cache_implementation", "eos_token_id", "final_logit_softcapping", "head_dim", "hidden_activation",
        "hidden_size", "initializer_range", "intermediate_size", "max_position_embeddings", "model_type",
        "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pad_token_id",
        "query_pre_attn_scalar", "rms_norm_eps", "rope_local_base_freq", "rope_scaling", "rope_theta",
        "sliding_window", "sliding_window_pattern", "torch_dtype", "transformers_version", "use_cache",
        "vocab_size",
    ],
)
GEMMA2 = dict(
    key="gemma2", name="tiny-gemma2-f32", gguf_name="tiny-gemma2-f32", gguf_arch="gemma2",
    cls=Gemma2ForCausalLM, dtype=torch.float32, seed=3302,
    user_symbols=["<mask>", "<2mass>", "[@BOS@]"] + UNUSED + TURN,  # <start_of_turn> 106, <end_of_turn> 107
    eos=[1, 107], template=("llama.cpp", GEMMA2_TEMPLATE),
    config=dict(
        hidden_size=64, intermediate_size=136, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
        hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh",
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, cache_implementation="hybrid",
        tie_word_embeddings=True, attention_bias=False, attention_dropout=0.0, initializer_range=0.02,
        use_cache=True,
    ),
    expect_layer_types=["sliding_attention", "full_attention"] * 2,
    init=dict(emb=0.08, linear=0.15, qk=1.0, final_norm_mean=30.0),
    generation_config={
        "_from_model_config": True, "bos_token_id": 2, "cache_implementation": "hybrid",
        "eos_token_id": [1, 107], "pad_token_id": 0, "transformers_version": "4.42.4",
    },
    # google/gemma-2-2b-it config.json keys (transformers 4.42.4).
    hub_keys=[
        "architectures", "attention_bias", "attention_dropout", "attn_logit_softcapping", "bos_token_id",
        "cache_implementation", "eos_token_id", "final_logit_softcapping", "head_dim", "hidden_act",
        "hidden_activation", "hidden_size", "initializer_range", "intermediate_size",
        "max_position_embeddings", "model_type", "num_attention_heads", "num_hidden_layers",
        "num_key_value_heads", "pad_token_id", "query_pre_attn_scalar", "rms_norm_eps", "rope_theta",
        "sliding_window", "torch_dtype", "transformers_version", "use_cache", "vocab_size",
    ],
)
SPECS = {"gemma3": GEMMA3, "gemma2": GEMMA2}


def write_json(path, obj, indent=2, sort_keys=False):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def f32(x):
    return float(np.float32(x))


def bf16(x):
    return float(torch.tensor(x, dtype=torch.float32).to(torch.bfloat16).to(torch.float64))


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------
def train_gemma_sp(path, spec):
    train = dict(mrf.SP_TRAIN)
    train.update(
        vocab_size=SP_VOCAB, add_dummy_prefix=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=spec["user_symbols"],
    )
    with open(mrf.CORPUS, "rb") as f:
        data = f.read()
    split = data.index(b"\n", int(len(data) * 0.9)) + 1
    lines = data[:split].decode("utf-8").split("\n") + mrf.NON_ASCII_LINES
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **train)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=path)
    assert sp.get_piece_size() == SP_VOCAB
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    for i, s in enumerate(spec["user_symbols"]):
        assert sp.id_to_piece(4 + i) == s, (i, s)
    return sp


def added_token(content, special):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def gemma_tokenizer_config(spec, template):
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"] + spec["user_symbols"]
    # As the Hub's Gemma tokenizer_config.json: pad/eos/bos/unk/<mask>/turn markers special,
    # the placeholders ([multimodal] / <2mass> / [@BOS@] / <unusedN>) not.
    special = lambda s: s in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>") or s in TURN  # noqa: E731
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): added_token(s, special(s)) for i, s in enumerate(specials)},
        "additional_special_tokens": list(TURN),
        "bos_token": "<bos>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<eos>",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "GemmaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    if template is not None:
        cfg["chat_template"] = template
    return dict(sorted(cfg.items()))


def build_tokenizer(spec, out, work_dir, template, notes):
    sp = train_gemma_sp(os.path.join(out, "tokenizer.model"), spec)
    n_byte = sum(sp.is_byte(i) for i in range(SP_VOCAB))
    n_user = len(spec["user_symbols"])
    notes.append(f"sentencepiece: {SP_VOCAB} pieces: 4 control/unk, {n_user} user-defined (ids 4..{3 + n_user}), "
                 f"{n_byte} byte pieces, {SP_VOCAB - 4 - n_user - n_byte} learned; turn markers "
                 f"{[(s, sp.piece_to_id(s)) for s in TURN]}")
    write_json(os.path.join(out, "tokenizer_config.json"), gemma_tokenizer_config(spec, template))
    tok = AutoTokenizer.from_pretrained(out)
    tmp = os.path.join(work_dir, spec["key"] + "-tok")
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    tok.save_pretrained(tmp)
    with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    # The turn markers special, as in the Hub's tokenizer.json (and tokenizer_config.json above).
    for t in tj["added_tokens"]:
        if t["content"] in TURN:
            t["special"] = True
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tj, indent=2, ensure_ascii=False) + "\n")
    parts = {k: tj[k] for k in ("normalizer", "pre_tokenizer", "decoder", "post_processor")}
    notes += [f"tokenizer.json {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in parts.items()]
    notes.append(f"tokenizer.json model: {tj['model']['type']}, {len(tj['model']['vocab'])} vocab, "
                 f"{len(tj['model']['merges'])} merges, byte_fallback {tj['model'].get('byte_fallback')}; "
                 f"{len(tj['added_tokens'])} added tokens, special: "
                 f"{[t['content'] for t in tj['added_tokens'] if t['special']]}")
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.bos_token_id == 2 and tok.eos_token_id == 1 and tok.pad_token_id == 0 and tok.unk_token_id == 3
    assert len(tok) == SP_VOCAB, len(tok)
    ids = tok(PROMPT_TEXT)["input_ids"]
    assert ids[0] == 2 and ids[1:] == sp.encode(PROMPT_TEXT), (ids, sp.encode(PROMPT_TEXT))
    turn = tok("<start_of_turn>user\nHi<end_of_turn>", add_special_tokens=False)["input_ids"]
    assert turn[0] == sp.piece_to_id(TURN[0]) and turn[-1] == sp.piece_to_id(TURN[1]), turn
    notes.append(f"AutoTokenizer: {type(tok).__name__}, bos {tok.bos_token_id}, eos {tok.eos_token_id}, "
                 f"pad {tok.pad_token_id}, unk {tok.unk_token_id}, len {len(tok)}; "
                 f"'<start_of_turn>user\\nHi<end_of_turn>' -> {turn}")
    if template is not None:
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        notes.append(f"apply_chat_template(user 'Hi', gen) = {text!r}")
    return tok, sp


# ---------------------------------------------------------------------------
# Checkpoint
# ---------------------------------------------------------------------------
def make_config(spec, vocab):
    kw = dict(spec["config"])
    common = dict(vocab_size=vocab, bos_token_id=2, eos_token_id=list(spec["eos"]), pad_token_id=0)
    if spec["key"] == "gemma3":
        cfg = Gemma3TextConfig(**common, **kw)
        cfg.architectures = ["Gemma3ForCausalLM"]
    else:
        cfg = Gemma2Config(**common, **kw)
        cfg.architectures = ["Gemma2ForCausalLM"]
    assert list(cfg.layer_types) == spec["expect_layer_types"], cfg.layer_types
    return cfg


def init_std_mean(spec, name):
    ini = spec["init"]
    if name.endswith("embed_tokens.weight"):
        return ini["emb"], 0.0
    if name.endswith("norm.weight"):
        return NORM_STD, (ini["final_norm_mean"] if name == "model.norm.weight" else 0.0)
    if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
        return ini["qk"], 0.0
    if name.endswith(".weight"):
        return ini["linear"], 0.0
    raise RuntimeError(name)


@torch.no_grad()
def init_weights(model, spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    params = dict(model.named_parameters())  # the tied lm_head appears once (as embed_tokens)
    for name in sorted(params):
        std, mean = init_std_mean(spec, name)
        p = params[name]
        p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean).to(p.dtype))


def build_checkpoint(spec, out, vocab, notes):
    cfg = make_config(spec, vocab)
    torch.manual_seed(spec["seed"])
    model = spec["cls"](cfg)
    init_weights(model, spec)
    model = model.to(spec["dtype"]).eval()
    mf.save_hf(model, out, {})
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        written = json.load(f)
    assert written["layer_types"] == spec["expect_layer_types"], written.get("layer_types")
    keys = set(written)
    hub = set(spec["hub_keys"])
    notes.append(f"config.json (transformers 5 save_pretrained): keys not in the Hub's {sorted(keys - hub)}, "
                 f"Hub keys not written {sorted(hub - keys)}")
    notes.append("config.json rope_parameters " + json.dumps(written.get("rope_parameters"), sort_keys=True)
                 + f", layer_types {written['layer_types']}, sliding_window {written['sliding_window']}, "
                 f"sliding_window_pattern {written.get('sliding_window_pattern')} / "
                 f"_sliding_window_pattern {written.get('_sliding_window_pattern')}")
    write_json(os.path.join(out, "generation_config.json"), spec["generation_config"], sort_keys=True)
    cfg2 = AutoConfig.from_pretrained(out)
    assert list(cfg2.layer_types) == spec["expect_layer_types"]
    assert cfg2.rope_parameters == cfg.rope_parameters, (cfg2.rope_parameters, cfg.rope_parameters)
    notes.append(f"AutoConfig reads back: {type(cfg2).__name__}, rope_parameters {cfg2.rope_parameters}, "
                 f"eos {cfg2.eos_token_id}, query_pre_attn_scalar {cfg2.query_pre_attn_scalar}")
    return cfg2


def load_reference(spec, out, notes):
    model, info, msgs = mf.load_with_report(out, cls=spec["cls"], dtype=spec["dtype"])
    if info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"{spec['name']}: bad load {info}")
    for m in msgs:
        if m.strip():
            notes.append("from_pretrained log: " + " ".join(m.split())[:300])
    files, tensors = mf.stored_tensors(out)
    assert files == ["model.safetensors"], files
    assert {str(v.dtype) for v in tensors.values()} == {str(spec["dtype"])}
    assert "lm_head.weight" not in tensors
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v), k
    hf_scale = float(model.model.embed_tokens.embed_scale)
    notes.append(f"HF embed_scale buffer after from_pretrained(dtype={spec['dtype']}): {hf_scale!r} "
                 f"(sqrt(hidden) = {math.sqrt(model.config.hidden_size)!r})")
    model = model.to(torch.float64).eval()
    model.set_attn_implementation("eager")
    return model, tensors, hf_scale


# ---------------------------------------------------------------------------
# float64 HF + hand-written forward
# ---------------------------------------------------------------------------
def inv_freq_f64(rp, head_dim):
    inv = 1.0 / (float(rp["rope_theta"]) ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if rp["rope_type"] == "linear":
        return inv / float(rp["factor"])
    assert rp["rope_type"] == "default", rp
    return inv


def rope_params_for(cfg, layer_type):
    rp = cfg.rope_parameters
    return rp[layer_type] if layer_type in rp else rp


MASKS = {}  # layer_idx -> bool (T, T) visibility seen by the patched eager attention


def _gemma_eager_f64(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
    """Gemma's eager_attention_forward with the softmax in float64 (HF: float32)."""
    n_rep = module.num_key_value_groups
    key = modeling_gemma3.repeat_kv(key, n_rep)
    value = modeling_gemma3.repeat_kv(value, n_rep)
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        w = torch.tanh(w / softcap) * softcap
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            MASKS[module.layer_idx] = attention_mask[0, 0].clone()
            w = w.masked_fill(~attention_mask, float("-inf"))
        else:
            MASKS[module.layer_idx] = (attention_mask[0, 0] == 0).clone()
            w = w + attention_mask
    w = torch.nn.functional.softmax(w, dim=-1)
    o = torch.matmul(w, value).transpose(1, 2).contiguous()
    module.f64_calls = getattr(module, "f64_calls", 0) + 1
    return o, w


def _rmsnorm_f64(self, x):
    assert x.dtype == torch.float64 and self.weight.dtype == torch.float64
    self.f64_calls = getattr(self, "f64_calls", 0) + 1
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight)


def _gemma3_rope_f64(self, x, position_ids, layer_type):
    inv = self.f64_inv[layer_type]
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    self.f64_calls = getattr(self, "f64_calls", 0) + 1
    return emb.cos(), emb.sin()


def _gemma2_rope_f64(self, x, position_ids):
    freqs = position_ids[..., None].to(torch.float64) * self.f64_inv
    emb = torch.cat((freqs, freqs), dim=-1)
    self.f64_calls = getattr(self, "f64_calls", 0) + 1
    return emb.cos(), emb.sin()


@contextlib.contextmanager
def gemma_float64_exact(model, embed_scale):
    """Everything in float64 while active (see the module docstring); the embedding
    normalizer set to `embed_scale`."""
    assert next(model.parameters()).dtype == torch.float64
    cfg = model.config
    saved = [(m, m.eager_attention_forward) for m in (modeling_gemma3, modeling_gemma2)]
    norm_types = (modeling_gemma3.Gemma3RMSNorm, modeling_gemma2.Gemma2RMSNorm)
    norms = [m for m in model.modules() if isinstance(m, norm_types)]
    rope = model.model.rotary_emb
    emb = model.model.embed_tokens
    old_scale = emb.embed_scale.clone()
    try:
        for mod, _ in saved:
            mod.eager_attention_forward = _gemma_eager_f64
        for m in norms:
            m.forward = types.MethodType(_rmsnorm_f64, m)
        if isinstance(rope, modeling_gemma3.Gemma3RotaryEmbedding):
            rope.f64_inv = {}
            for lt in set(cfg.layer_types):
                assert getattr(rope, f"{lt}_attention_scaling") == 1.0
                rope.f64_inv[lt] = inv_freq_f64(cfg.rope_parameters[lt], cfg.head_dim)
                hf = getattr(rope, f"{lt}_inv_freq").to(torch.float64)
                assert torch.allclose(hf, rope.f64_inv[lt], rtol=1e-2, atol=0), lt  # (bf16 if the model was cast)
            rope.forward = types.MethodType(_gemma3_rope_f64, rope)
        else:
            assert rope.attention_scaling == 1.0
            rope.f64_inv = inv_freq_f64(cfg.rope_parameters, cfg.head_dim)
            assert torch.allclose(rope.inv_freq.to(torch.float64), rope.f64_inv, rtol=1e-2, atol=0)
            rope.forward = types.MethodType(_gemma2_rope_f64, rope)
        emb.embed_scale = torch.tensor(embed_scale, dtype=torch.float64)
        yield
    finally:
        for mod, fn in saved:
            mod.eager_attention_forward = fn
        for m in norms + [rope]:
            if "forward" in m.__dict__:
                del m.forward
        emb.embed_scale = old_scale


@torch.no_grad()
def handwritten_gemma(cfg, sd, ids, embed_scale, stats=None):
    """Independent float64 Gemma 2 / Gemma 3 forward from the HF-named state dict
    (written from the architecture description; no transformers code).  With
    `stats` (a dict), collects the pre-cap attention scores of visible pairs and
    the pre-cap final logits."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    ids = torch.tensor(ids, dtype=torch.long)
    T = len(ids)
    H, KV, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    eps = cfg.rms_norm_eps
    g = lambda n: sd["model." + n]  # noqa: E731
    qk_norm = "model.layers.0.self_attn.q_norm.weight" in sd

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * (1.0 + w)

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    pos = torch.arange(T, dtype=torch.float64)
    tables = {}
    for lt in set(cfg.layer_types):
        rp = rope_params_for(cfg, lt)
        inv = [1.0 / (float(rp["rope_theta"]) ** (2 * i / d)) for i in range(d // 2)]
        if rp["rope_type"] == "linear":
            inv = [f / float(rp["factor"]) for f in inv]
        else:
            assert rp["rope_type"] == "default", rp
        ang = pos[:, None] * torch.tensor(inv, dtype=torch.float64)[None, :]
        tables[lt] = (ang.cos(), ang.sin())

    def rope(t, lt):  # (heads, T, d): pairs (i, i + d/2)
        cos, sin = tables[lt]
        a, b = t[..., : d // 2], t[..., d // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    i_idx = torch.arange(T)[:, None]
    j_idx = torch.arange(T)[None, :]
    scale = float(cfg.query_pre_attn_scalar) ** -0.5
    cap = cfg.attn_logit_softcapping
    x = g("embed_tokens.weight")[ids] * embed_scale
    for li in range(cfg.num_hidden_layers):
        p = f"layers.{li}."
        lt = cfg.layer_types[li]
        h = rms(x, g(p + "input_layernorm.weight"))
        q = (h @ g(p + "self_attn.q_proj.weight").T).reshape(T, H, d).transpose(0, 1)
        k = (h @ g(p + "self_attn.k_proj.weight").T).reshape(T, KV, d).transpose(0, 1)
        v = (h @ g(p + "self_attn.v_proj.weight").T).reshape(T, KV, d).transpose(0, 1)
        if qk_norm:
            q = rms(q, g(p + "self_attn.q_norm.weight"))
            k = rms(k, g(p + "self_attn.k_norm.weight"))
        q, k = rope(q, lt), rope(k, lt)
        kv_of = torch.tensor([hh // (H // KV) for hh in range(H)])
        s = torch.matmul(q, k[kv_of].transpose(-1, -2)) * scale  # (H, T, T)
        visible = j_idx <= i_idx
        if lt == "sliding_attention":
            visible = visible & (j_idx > i_idx - cfg.sliding_window)
        if stats is not None:
            stats.setdefault("scores", []).append(s[:, visible].flatten())
        if cap is not None:
            s = cap * torch.tanh(s / cap)
        s = s.masked_fill(~visible, float("-inf"))
        pr = torch.exp(s - s.max(-1, keepdim=True).values)
        pr = pr / pr.sum(-1, keepdim=True)
        o = torch.matmul(pr, v[kv_of]).transpose(0, 1).reshape(T, H * d)
        att = o @ g(p + "self_attn.o_proj.weight").T
        x = x + rms(att, g(p + "post_attention_layernorm.weight"))
        h = rms(x, g(p + "pre_feedforward_layernorm.weight"))
        m = (gelu_tanh(h @ g(p + "mlp.gate_proj.weight").T) * (h @ g(p + "mlp.up_proj.weight").T)) \
            @ g(p + "mlp.down_proj.weight").T
        x = x + rms(m, g(p + "post_feedforward_layernorm.weight"))
    x = rms(x, g("norm.weight"))
    logits = x @ g("embed_tokens.weight").T  # tied head
    if stats is not None:
        stats.setdefault("logits", []).append(logits.flatten())
    if cfg.final_logit_softcapping is not None:
        logits = cfg.final_logit_softcapping * torch.tanh(logits / cfg.final_logit_softcapping)
    return logits


def check_masks(cfg, T, notes):
    """The masks HF's eager attention saw for the last T-token forward."""
    i_idx = torch.arange(T)[:, None]
    j_idx = torch.arange(T)[None, :]
    for li, lt in enumerate(cfg.layer_types):
        vis = MASKS[li]
        assert vis.shape == (T, T), vis.shape
        want = j_idx <= i_idx
        if lt == "sliding_attention":
            want = want & (j_idx > i_idx - cfg.sliding_window)
        assert torch.equal(vis, want), (li, lt)
    w = cfg.sliding_window
    notes.append(f"HF masks ({T} tokens) checked: sliding layers see j iff i - {w} < j <= i "
                 f"(query {T - 1} sees keys {T - w}..{T - 1}: {w} keys incl. itself), full layers j <= i")


def cap_stats(cfg, stats):
    out = {}
    for key, cap in (("scores", cfg.attn_logit_softcapping), ("logits", cfg.final_logit_softcapping)):
        v = torch.cat(stats[key]).abs()
        c = cap if cap is not None else float("nan")
        out[key] = dict(n=int(v.numel()), max=float(v.max()), mean=float(v.mean()),
                        above_half_cap=float((v > 0.5 * c).double().mean()) if cap is not None else None,
                        above_cap=float((v > c).double().mean()) if cap is not None else None, cap=cap)
    return out


def fmt_stats(st):
    parts = []
    for key, label in (("scores", "attention scores (visible pairs, before the cap)"),
                       ("logits", "final logits (before the cap)")):
        s = st[key]
        if s["cap"] is None:
            parts.append(f"{label}: max |.| {s['max']:.3g}, mean |.| {s['mean']:.3g} (no cap)")
        else:
            parts.append(f"{label}: {s['n']} values, |x| > cap/2 = {s['cap'] / 2:g}: {100 * s['above_half_cap']:.1f}%, "
                         f"|x| > cap = {s['cap']:g}: {100 * s['above_cap']:.1f}%, max |x| {s['max']:.1f}, "
                         f"mean |x| {s['mean']:.2f}")
    return "; ".join(parts)


def compute_reference(cfg, model, tok, sp, heldout, embed_scale, notes):
    enc = lambda t, special: tok(t, add_special_tokens=special)["input_ids"]  # noqa: E731
    bos = tok.bos_token_id
    prompt_ids = enc(PROMPT_TEXT, True)
    assert prompt_ids[0] == bos and bos not in prompt_ids[1:], prompt_ids
    heldout_ids = enc(heldout, False)
    assert bos not in heldout_ids
    assert heldout_ids == sp.encode(heldout), "HF tokenizer.json and tokenizer.model disagree on the held-out slice"
    sd64 = dict(model.state_dict())
    stats = {}
    with gemma_float64_exact(model, embed_scale):
        MASKS.clear()
        logits = mf.logits_for(model, prompt_ids)
        check_masks(cfg, len(prompt_ids), notes)
        hand = handwritten_gemma(cfg, sd64, prompt_ids, embed_scale, stats)
        d = float((logits - hand).abs().max())
        win = [bos] + heldout_ids[:PPL_CONTEXT - 1]
        MASKS.clear()
        lw = mf.logits_for(model, win)
        check_masks(cfg, len(win), notes)
        dw = float((lw - handwritten_gemma(cfg, sd64, win, embed_scale, stats)).abs().max())
        notes.append(f"float64 check: max|HF_f64exact - handwritten| = {d:.3g} (prompt, {len(prompt_ids)} tokens), "
                     f"{dw:.3g} (a full {len(win)}-token window); logits max |.| {float(hand.abs().max()):.3g}")
        assert d < 1e-10 and dw < 1e-10, (d, dw)
        assert model.model.norm.f64_calls >= 1 and model.model.rotary_emb.f64_calls >= 1
        assert model.model.layers[0].self_attn.f64_calls >= 1
        st = cap_stats(cfg, stats)
        notes.append("cap statistics (prompt + window): " + fmt_stats(st))
        prompts = [enc(text, True) for text in mf.GREEDY_PROMPT_TEXTS]
        k, g_ids, margins = mf.pick_greedy_prompt(model, prompts)
        g_text, g_prompt = mf.GREEDY_PROMPT_TEXTS[k], prompts[k]
        gen = mf.greedy_via_generate(model, g_prompt, mf.GREEDY_NEW)
        assert gen == g_ids, (gen, g_ids)
        notes.append("generate() (DynamicCache, sliding-window layers) cross-check: identical greedy ids")
        no_bos = enc(g_text, False)
        assert no_bos == g_prompt[1:], (no_bos, g_prompt)
        nb_ids, _ = mf.greedy(model, no_bos, mf.GREEDY_NEW)
        notes.append(f"greedy prompt {g_text!r}: with BOS {g_prompt} -> {g_ids} (min margin {min(margins):.4f}); "
                     f"without BOS -> {nb_ids}; differ: {nb_ids != g_ids}")
        table = mrf.sp_piece_nbytes(sp)
        ppl, n_windows, nbytes = mrf.bos_perplexity(model, heldout_ids, bos, lambda t: table[t], PPL_CONTEXT)
    nb_text = len(heldout.encode("utf-8"))
    notes.append(f"perplexity: {len(heldout_ids)} held-out ids in {n_windows} windows of <= {PPL_CONTEXT}; "
                 f"{nbytes} bytes by ppl_bytes_rule vs {nb_text} UTF-8 bytes in the text; "
                 f"ppl {ppl['ppl_perplexity']:.4f}, bpb {ppl['ppl_bits_per_byte']:.4f}")
    bytes_rule = ("sentencepiece (no dummy prefix): <0xNN> byte-fallback pieces 1 byte, other pieces "
                  "the UTF-8 length of the piece with each U+2581 counted as one space byte "
                  "(= the UTF-8 bytes of the text)")
    ref = mrf.reference_entry(prompt_ids, logits, g_text, g_prompt, g_ids, margins, bos, ppl, bytes_rule)
    return ref, logits, st, max(d, dw)


def write_reference(path, ref):
    with open(path, "w") as f:
        json.dump(ref, f)
        f.write("\n")


# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------
def gguf_fields(path):
    reader = GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    return reader, out


def summarize(v):
    if isinstance(v, list) and len(v) > 8:
        return f"[{len(v)} items: {v[:6]!r} ... {v[-2:]!r}]"
    if isinstance(v, str) and len(v) > 120:
        return f"<{len(v)} chars: {v[:60]!r}...>"
    return v


def llama_cpp_view(spec, cfg, meta, notes):
    """The HF config of what llama.cpp's runtime computes for the GGUF (float64), and a
    record of every choice."""
    arch = spec["gguf_arch"]
    k = lambda name: f"{arch}.{name}"  # noqa: E731
    n_layer = int(meta[k("block_count")])
    n_embd = int(meta[k("embedding_length")])
    n_head = int(meta[k("attention.head_count")])
    head_k = int(meta.get(k("attention.key_length"), n_embd // n_head))
    sem = {}
    # Layer types (llama_model_base::load_swa_pattern, llama_hparams::set_swa_pattern).
    default_period = {"gemma3": 6, "gemma2": 2}[arch]
    n_swa = meta.get(k("attention.sliding_window"))
    if arch == "gemma2" and n_swa is None:
        n_swa = 4096  # llama_model_gemma2::load_arch_hparams default
    pat = meta.get(k("attention.sliding_window_pattern"))
    if arch == "gemma3" and not n_swa:
        swa = [False] * n_layer
        sem["layer_types_rule"] = "no gemma3.attention.sliding_window: LLAMA_SWA_TYPE_NONE, every layer full"
    elif isinstance(pat, list):
        swa = [bool(b) for b in pat]
        sem["layer_types_rule"] = f"{k('attention.sliding_window_pattern')} array"
    else:
        n = int(pat) if pat is not None else default_period
        swa = [n == 0 or (il % n < n - 1) for il in range(n_layer)]
        sem["layer_types_rule"] = (f"{k('attention.sliding_window_pattern')} = {n}" if pat is not None else
                                   f"no {k('attention.sliding_window_pattern')} key: llama.cpp's default period "
                                   f"{n} for {arch}, layer il sliding iff il % {n} < {n - 1}")
    layer_types = ["sliding_attention" if s else "full_attention" for s in swa]
    sem["layer_types"] = layer_types
    sem["sliding_window"] = int(n_swa) if n_swa else None
    # Attention scale (f_attention_scale in load_arch_hparams: the 27B sizes use n_embd / n_head).
    big = {"gemma3": 62, "gemma2": 46}[arch]
    qpas = (n_embd // n_head) if n_layer == big else head_k
    sem["attention_scale"] = f"1/sqrt({qpas})" + (" (n_embd / n_head: 27B layer count)" if n_layer == big else
                                                  " (1/sqrt(key_length); query_pre_attn_scalar is not in the GGUF)")
    # Rope per layer type.
    base = float(meta.get(k("rope.freq_base"), 10000.0))
    factor = float(meta.get(k("rope.scaling.factor"), 0.0)) or float(meta.get(k("rope.scale_linear"), 0.0))
    stype = meta.get(k("rope.scaling.type"), "linear")
    assert stype in ("linear", "none"), stype
    full = {"rope_type": "linear", "factor": factor, "rope_theta": base} if (factor and factor != 1.0 and stype == "linear") \
        else {"rope_type": "default", "rope_theta": base}
    if arch == "gemma3":
        sliding = {"rope_type": "default", "rope_theta": float(meta.get(k("rope.freq_base_swa"), 10000.0))}
        rope = {"full_attention": full, "sliding_attention": sliding}
        sem["rope"] = {"full_attention": full, "sliding_attention": sliding,
                       "rule": "full: rope.freq_base + 1/rope.scaling.factor (linear); sliding: rope.freq_base_swa, "
                               "freq_scale_swa 1 (not read from the file)"}
    else:
        base_swa = float(meta.get(k("rope.freq_base_swa"), base))
        assert base_swa == base, (base_swa, base)
        rope = dict(full)
        sem["rope"] = {"all_layers": full, "rule": "rope.freq_base (10000 when absent), swa = full"}
    # Soft-caps.
    attn_cap = meta.get(k("attn_logit_softcapping")) if arch == "gemma2" else None
    final_cap = meta.get(k("final_logit_softcapping"))
    if arch == "gemma3" and not final_cap:
        final_cap = None
    sem["attn_logit_softcapping"] = attn_cap
    sem["final_logit_softcapping"] = final_cap
    sem["embed_scale"] = f32(math.sqrt(n_embd))
    sem["embed_scale_rule"] = f"sqrtf(n_embd) = sqrtf({n_embd}) in f32"
    sem["rms_norm_eps"] = f32(meta[k("attention.layer_norm_rms_epsilon")])
    vcfg = copy.deepcopy(cfg)
    vcfg.layer_types = layer_types
    vcfg.sliding_window = sem["sliding_window"]
    vcfg.query_pre_attn_scalar = qpas
    vcfg.rope_parameters = rope
    vcfg.attn_logit_softcapping = attn_cap
    vcfg.final_logit_softcapping = final_cap
    vcfg.rms_norm_eps = sem["rms_norm_eps"]
    diffs = []
    for name in ("layer_types", "sliding_window", "query_pre_attn_scalar", "rope_parameters",
                 "attn_logit_softcapping", "final_logit_softcapping", "rms_norm_eps"):
        a, b = getattr(cfg, name), getattr(vcfg, name)
        if (list(a) if name == "layer_types" else a) != (list(b) if name == "layer_types" else b):
            diffs.append(f"{name}: config.json {a!r} -> llama.cpp {b!r}")
    sem["differs_from_config_json"] = diffs
    notes.append("llama.cpp view of the GGUF: " + ("; ".join(diffs) if diffs else "same as config.json"))
    return vcfg, sem


def gguf_state_dict(spec, cfg, gg, hf_names, hf_tensors, notes):
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, spec["gguf_arch"].upper()), cfg.num_hidden_layers)
    back = {}
    for hn in hf_names:
        gn = tmap.get_name(hn, try_suffixes=(".weight",))
        assert gn is not None, hn
        back[gn] = hn
    assert set(back) == set(gg), (sorted(set(back) ^ set(gg)))
    sd, worst = {}, (0.0, None)
    for gn, (tname, arr) in gg.items():
        assert tname == "F32", (gn, tname)
        hn = back[gn]
        w = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float64)))
        want = hf_tensors[hn].to(torch.float64)
        if hn.endswith("norm.weight"):
            # Stored as 1 + w, added by the converter in float32 (after casting bf16 to f32).
            assert torch.equal(w, (hf_tensors[hn].to(torch.float32) + 1.0).to(torch.float64)), hn
            w = w - 1.0
            dd = float((w - want).abs().max())
            if dd >= worst[0]:
                worst = (dd, hn)
        else:
            assert torch.equal(w, want), hn
        sd[hn] = w
    notes.append(f"GGUF tensors == checkpoint exactly; norm weights == f32(1 + w) exactly; (stored - 1) - w "
                 f"max |diff| {worst[0]:.3g} ({worst[1]})")
    return sd


def make_gguf(spec, args, out, cfg, hf_tensors, tok, sp, heldout, notes):
    path = os.path.join(GGUF_OUT, spec["gguf_name"] + ".gguf")
    hf_dir = os.path.join(args.work_dir, spec["gguf_name"])
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    shutil.copytree(out, hf_dir, ignore=shutil.ignore_patterns("reference.json"))
    notes += mgf.convert(args.llama_cpp, hf_dir, path, "f32")
    reader, meta = gguf_fields(path)
    _, gg = mgf.read_gguf(path)
    listing = []
    for key, v in meta.items():
        if key.startswith(("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                           "tokenizer.ggml.merges")):
            v = summarize(v)
        elif key == "tokenizer.chat_template":
            v = summarize(v)
        listing.append(f"gguf {key} = {v!r}")
    types_ = meta.get("tokenizer.ggml.token_type")
    if types_ is not None:
        hist = {}
        for i, t in enumerate(types_):
            hist.setdefault(int(t), []).append(i)
        listing.append("gguf token types: " + "; ".join(
            f"type {t}: {len(ids)} ids ({ids[:8]}{'...' if len(ids) > 8 else ''})" for t, ids in sorted(hist.items())))
    for t in reader.tensors:
        listing.append(f"tensor {t.name} shape(ne) {list(int(x) for x in t.shape)} {gguf.GGMLQuantizationType(t.tensor_type).name}")
    arch = meta["general.architecture"]
    assert arch == spec["gguf_arch"], arch
    model0 = spec["cls"](cfg)
    hf_names = [n for n, _ in model0.named_parameters()]
    sd = gguf_state_dict(spec, cfg, gg, hf_names, hf_tensors, notes)
    if args.gguf_semantics == "llama.cpp":
        vcfg, sem = llama_cpp_view(spec, cfg, meta, notes)
    else:
        vcfg = copy.deepcopy(cfg)
        sem = {"rule": "--gguf-semantics hf: the fixture's config.json; only the normalizer is llama.cpp's",
               "embed_scale": f32(math.sqrt(cfg.hidden_size))}
    vcfg._attn_implementation = "eager"
    model = spec["cls"](vcfg).to(torch.float64)
    model.set_attn_implementation("eager")
    res = model.load_state_dict(sd, strict=False)
    assert not res.unexpected_keys and set(res.missing_keys) <= {"lm_head.weight"}, res
    model.tie_weights()
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    model.eval()
    gnotes = []
    ref, _, st, dmax = compute_reference(vcfg, model, tok, sp, heldout, sem["embed_scale"], gnotes)
    notes += ["[gguf reference] " + n for n in gnotes]
    ref["gguf_file"] = os.path.basename(path)
    ref["tensor_types"] = {k: v[0] for k, v in gg.items()}
    ref["reference_semantics"] = sem
    write_reference(os.path.join(GGUF_OUT, spec["gguf_name"] + ".reference.json"), ref)
    counts = {}
    for t in ref["tensor_types"].values():
        counts[t] = counts.get(t, 0) + 1
    entry = {
        "file": os.path.basename(path),
        "reference": spec["gguf_name"] + ".reference.json",
        "model": "tiny-" + spec["key"],
        "gguf_type": "f32",
        "architecture": arch,
        "bytes": os.path.getsize(path),
        "sha256": sha256(path),
        "tensor_type_counts": counts,
        "tensor_types": ref["tensor_types"],
        "made_by": "convert_hf_to_gguf.py --outtype f32",
        "generator": "tools/make_gemma_fixtures.py",
        "source": f"tests/fixtures/{spec['name']}",
        "ppl_perplexity": ref["ppl_perplexity"],
        "reference_semantics": sem,
        "versions": {"llama_cpp": args.llama_cpp_version, "gguf": mgf.mf_version("gguf"), "transformers": mgf.mf_version("transformers"),
                     "torch": torch.__version__, "sentencepiece": mgf.mf_version("sentencepiece")},
        "notes": [n for n in notes if n.startswith(("GGUF tensors", "llama.cpp view", "[gguf reference] float64",
                                                     "[gguf reference] cap"))],
    }
    return entry, listing, ref, st, dmax


# ---------------------------------------------------------------------------
def build(spec, args, heldout):
    notes = []
    out = os.path.join(FIX, spec["name"])
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    where, rel = spec["template"]
    tpath = rel if where == "fixture" else os.path.join(args.llama_cpp, rel)
    template = None
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8", newline="") as f:
            template = f.read()
        notes.append(f"chat_template from {tpath}")
    else:
        notes.append(f"NO chat_template: {tpath} does not exist")
    tok, sp = build_tokenizer(spec, out, args.work_dir, template, notes)
    cfg = build_checkpoint(spec, out, SP_VOCAB, notes)
    model, tensors, hf_scale = load_reference(spec, out, notes)
    scale = bf16(math.sqrt(cfg.hidden_size)) if spec["dtype"] == torch.bfloat16 else f32(math.sqrt(cfg.hidden_size))
    assert hf_scale == scale, (hf_scale, scale)
    notes.append(f"reference embed normalizer {scale!r} ({'bf16' if spec['dtype'] == torch.bfloat16 else 'f32'}"
                 f"(sqrt({cfg.hidden_size})))")
    ref, logits, st, dmax = compute_reference(cfg, model, tok, sp, heldout, scale, notes)
    write_reference(os.path.join(out, "reference.json"), ref)
    entry, listing, gref, gst, gdmax = make_gguf(spec, args, out, cfg, tensors, tok, sp, heldout, notes)
    dl = float((torch.tensor(gref["logits"]) - logits).abs().max())
    notes.append(f"GGUF reference vs fixture reference: max |logits diff| {dl:.4g}; greedy ids equal "
                 f"{gref['greedy_ids'] == ref['greedy_ids']}; ppl {gref['ppl_perplexity']:.4f} vs {ref['ppl_perplexity']:.4f}")
    entry["notes"].append(notes[-1])
    summary = (f"{spec['name']}: vocab {SP_VOCAB}, prompt {len(ref['prompt_ids'])} ids, greedy min margin "
               f"{min(ref['greedy_margins']):.4f}, ppl {ref['ppl_perplexity']:.4f}, max|HF-hand| {dmax:.3g}; "
               f"{spec['gguf_name']}.gguf: greedy min margin {min(gref['greedy_margins']):.4f}, "
               f"ppl {gref['ppl_perplexity']:.4f}, max|HF-hand| {gdmax:.3g}")
    return summary, notes, listing, entry


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Gemma 3 / Gemma 2 fixtures (see the module docstring).")
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (convert_hf_to_gguf.py, gguf-py, models/templates)")
    ap.add_argument("--work-dir", default="/tmp/wgpt-gemma-build", help="scratch directory")
    ap.add_argument("--only", nargs="+", choices=sorted(SPECS))
    ap.add_argument("--llama-cpp-version", default="b11312 (vendored in the llama-cpp-python 0.3.36 sdist)",
                    help="recorded in manifest.json (a source tree without git reports build 0)")
    ap.add_argument("--gguf-semantics", choices=["llama.cpp", "hf"], default="llama.cpp",
                    help="the config of the GGUF references (module docstring, GGUF references)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.llama_cpp = os.path.abspath(args.llama_cpp)
    mf.quiet_and_seeded()
    os.makedirs(args.work_dir, exist_ok=True)
    with open(HELDOUT, "rb") as f:
        heldout = f.read().decode("utf-8")
    entries, report = {}, []
    for key in (args.only or ["gemma3", "gemma2"]):
        spec = SPECS[key]
        summary, notes, listing, entry = build(spec, args, heldout)
        entries["tiny-" + key] = entry
        report.append((spec["name"], summary, notes, listing))
    mrf.update_manifest(entries)
    for name, _, notes, listing in report:
        for n in notes:
            print(f"[{name}] {n}")
        for line in listing:
            print(f"[{name}] {line}")
    for _, summary, _, _ in report:
        print(summary)
    for key in (args.only or ["gemma3", "gemma2"]):
        spec = SPECS[key]
        d = os.path.join(FIX, spec["name"])
        sizes = {x: os.path.getsize(os.path.join(d, x)) for x in sorted(os.listdir(d))}
        g = os.path.join(GGUF_OUT, spec["gguf_name"])
        sizes_g = {os.path.basename(p): os.path.getsize(p) for p in (g + ".gguf", g + ".reference.json")}
        print(f"{spec['name']}: {sizes}; {sizes_g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
