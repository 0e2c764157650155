#!/usr/bin/env python3
"""Fixtures laid out "as the Hub ships them": BOS-prepending tokenizers, Hub-style
config.json (transformers 4.x keys), a Llama 3.2 byte-level BPE checkpoint and a
Llama 2 SentencePiece checkpoint, each with a float64 HF reference, a GGUF made
by llama.cpp's own converter with its reference, and tokenizer id cases.

Run from the repository root (needs the packages in tools/requirements.txt and a
llama.cpp source tree for convert_hf_to_gguf.py + gguf-py; no llama.cpp build):

    python tools/make_real_fixtures.py --llama-cpp /work/llama.cpp
    python tools/make_real_fixtures.py --llama-cpp DIR --only llama32   # or sp-llama

Deterministic (fixed seeds, one torch thread, SentencePiece trained with
num_threads=1; two runs give identical files).  Writes only the files listed
here; reads
tests/fixtures/tokenizer.json, tests/fixtures/heldout_slice.txt,
tools/data/tinyshakespeare.txt and, from the llama.cpp tree,
models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja (the Llama 3.2 Instruct
chat template, the same text for 1B and 3B).  Scratch files go to --work-dir.

tests/fixtures/tiny-llama32-bf16/  (Llama-3.2-1B-Instruct layout, tiny sizes)
    config.json   the keys of meta-llama/Llama-3.2-1B-Instruct's config.json, as
                  transformers 4.45 wrote it (sorted, indent 2): rope_theta
                  500000.0 + rope_scaling {factor 32.0, high_freq_factor 4.0,
                  low_freq_factor 1.0, original_max_position_embeddings 8192,
                  rope_type "llama3"}, max_position_embeddings 131072, head_dim
                  16, tie_word_embeddings true, torch_dtype "bfloat16",
                  transformers_version "4.45.0.dev0", bos_token_id 384,
                  eos_token_id [385, 392, 393] (<|end_of_text|>, <|eom_id|>,
                  <|eot_id|>: the Instruct model's list; the base 1B has 385 only).
                  transformers 5's save_pretrained writes instead "dtype" and one
                  "rope_parameters" dict (and pad_token_id null); the script
                  rewrites the file and checks transformers 5 reads it back to the
                  same rope_parameters.  hidden 64, 2 layers, 4 heads / 2 kv heads,
                  intermediate 128, rms_norm_eps 1e-5, vocab_size 396.
    generation_config.json  as Llama-3.2-*-Instruct's: bos_token_id, do_sample
                  true, eos_token_id [385, 392, 393], temperature 0.6, top_p 0.9.
    model.safetensors  bf16, random weights (seeded), tied head (no lm_head).
    tokenizer.json  tests/fixtures/tokenizer.json (384-token byte-level BPE with
                  the GPT-2 pre-tokenizer regex, <|endoftext|> = 0) plus Llama 3's
                  first twelve special tokens in Llama 3's order as ids 384..395:
                  <|begin_of_text|> 384, <|end_of_text|> 385,
                  <|reserved_special_token_0|> 386, <|reserved_special_token_1|>
                  387, <|finetune_right_pad_id|> 388, <|reserved_special_token_2|>
                  389, <|start_header_id|> 390, <|end_header_id|> 391, <|eom_id|>
                  392, <|eot_id|> 393, <|python_tag|> 394,
                  <|reserved_special_token_3|> 395; post_processor as Llama 3's
                  tokenizer.json: Sequence[ByteLevel(add_prefix_space true,
                  trim_offsets false, use_regex true), TemplateProcessing(single
                  "<|begin_of_text|> $A", pair "<|begin_of_text|> $A
                  <|begin_of_text|>:1 $B:1")].  (Real Llama 3 uses a Split
                  pre-tokenizer with its own regex + ByteLevel(use_regex false); this
                  one keeps the GPT-2 regex the merges were trained with.)
    tokenizer_config.json  as Llama-3.2-*-Instruct's: added_tokens_decoder,
                  bos_token <|begin_of_text|>, eos_token <|eot_id|>, chat_template
                  (Llama 3.2 Instruct's, verbatim), clean_up_tokenization_spaces
                  true, model_input_names, model_max_length 131072,
                  tokenizer_class PreTrainedTokenizerFast (no add_bos_token key:
                  the BOS comes from the post-processor).
    reference.json  see below.
tests/fixtures/gguf/tiny-llama32-f16.gguf (+ .reference.json)
    convert_hf_to_gguf.py tiny-llama32-bf16 --outtype f16 (its BPE pre-tokenizer
    hash is unknown, so it runs with tools/make_gguf_fixtures.py's "gpt-2"
    fallback).  The converter writes rope_freqs (llama3 rule) and
    llama.context_length 131072; add_bos_token comes from the post-processor.

tests/fixtures/tiny-sp-llama-f32/  (Llama-2-7b-hf layout, tiny sizes)
    tokenizer.model  SentencePiece BPE trained here (SP_TRAIN: vocab 512,
                  byte_fallback, split_digits, add_dummy_prefix,
                  remove_extra_whitespaces false, identity normalization,
                  character_coverage 1.0, allow_whitespace_only_pieces,
                  <unk>=0 <s>=1 </s>=2, no pad) on the first 90% of
                  tinyshakespeare.txt (one sentence per line) plus a few lines of
                  non-ASCII text (NON_ASCII_LINES) so that pieces like "é", "日"
                  exist while other characters (emoji, most CJK) go to <0xNN>.
    tokenizer_config.json  as Llama 2's: LlamaTokenizer, add_bos_token true,
                  add_eos_token false, legacy true, bos/eos/unk, pad null,
                  clean_up_tokenization_spaces false, padding_side right, ...
    tokenizer.json  what transformers (5.x) converts tokenizer.model into
                  (AutoTokenizer.from_pretrained on tokenizer.model +
                  tokenizer_config.json, then save_pretrained; only tokenizer.json
                  is kept).  The script prints its normalizer / pre_tokenizer /
                  decoder / post_processor.
    config.json   the keys of meta-llama/Llama-2-7b-hf's config.json
                  (transformers 4.31 style: no rope_theta, rope_scaling null,
                  torch_dtype "float16", no head_dim) with hidden 64, 2 layers, 4
                  heads / 4 kv heads, intermediate 128, max_position_embeddings
                  4096, rms_norm_eps 1e-5, bos 1, eos 2, untied, vocab_size 512.
                  NOTE: torch_dtype says float16 as Llama 2's does, but the
                  weights in model.safetensors are float32 (hence "-f32").
    generation_config.json  as Llama-2-7b-hf's (bos 1, eos 2, pad 0, do_sample,
                  temperature 0.6, top_p 0.9, max_length 4096).
    model.safetensors  f32, random weights (seeded), untied lm_head.
tests/fixtures/gguf/tiny-sp-llama-f32.gguf (+ .reference.json)
    convert_hf_to_gguf.py tiny-sp-llama-f32 --outtype f32: tokenizer.ggml.model
    "llama" (tokens, scores, token_type from tokenizer.model).

tests/fixtures/tokenizer_cases/sp-llama.json, llama32.json
    A list of {"text", "hf_ids" (add_special_tokens=False), "hf_ids_special"
    (add_special_tokens=True)} for CASE_TEXTS (+ special-token texts for llama32);
    sp-llama.json also has "sp_ids" (sentencepiece.SentencePieceProcessor's own
    encode) and "hf_differs_from_sp" (hf_ids != sp_ids).

reference.json (both directories; the GGUF references the same plus gguf_file
and tensor_types) has the keys of tools/make_fixtures.py's references plus
prompt_text, greedy_prompt_text, bos_token_id and ppl_bytes_rule:
    prompt_text / prompt_ids   PROMPT_TEXT encoded WITH special tokens (so
                               prompt_ids[0] is the BOS id); logits for every
                               position (len(prompt_ids) x vocab_size)
    greedy_prompt_text / _ids  the first of make_fixtures' GREEDY_PROMPT_TEXTS
                               whose 12 greedy steps all have margin >= 0.05
                               and >= 3 distinct ids, encoded with the BOS
    greedy_ids, greedy_margins 12 argmax steps (full recompute, no eos stop;
                               cross-checked with generate())
    ppl_*                      the BOS perplexity protocol: ids =
                               heldout_slice.txt encoded WITHOUT special tokens;
                               consecutive non-overlapping chunks of ctx - 1 = 63
                               text tokens; each window = [BOS] + chunk; every
                               text token of a window is scored given the tokens
                               before it (BOS included); ppl_tokens_scored =
                               number of text tokens in the windows;
                               ppl_chunks2_* = first 2 windows.  bits_per_byte =
                               total NLL in bits / bytes of the scored tokens,
                               with the per-token byte count of ppl_bytes_rule.
All float64 (make_fixtures' float64_exact patches: RoPE incl. the llama3 rule,
RMSNorm, softmax), checked against make_fixtures' hand-written float64 forward.
GGUF references: every tensor of the GGUF read back (gguf.quants.dequantize),
the converter's q/k row permutation undone, loaded into the model built from the
fixture's config.json (make_gguf_fixtures' helpers); the F16 file is checked to
equal the bf16 checkpoint rounded to f16 bit for bit, the F32 file to equal the
f32 checkpoint exactly.
"""

import argparse
import io
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (float64 machinery, hand-written forward)
import make_gguf_fixtures as mgf  # noqa: E402  (GGUF reading / un-permuting / converter wrapper)

import sentencepiece as spm  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from tokenizers import Tokenizer, processors  # noqa: E402
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

FIX = mf.FIX
GGUF_OUT = os.path.join(FIX, "gguf")
CASES_OUT = os.path.join(FIX, "tokenizer_cases")
CORPUS = os.path.join(mf.REPO_ROOT, "tools", "data", "tinyshakespeare.txt")
HELDOUT = os.path.join(FIX, "heldout_slice.txt")

PPL_CONTEXT = 64
# Shorter than make_fixtures.PROMPT_TEXT so that the logits stay small (~15 rows).
PROMPT_TEXT = "ROMEO:\nBut soft, what light"

# ---------------------------------------------------------------------------
# Llama 3.2 style
# ---------------------------------------------------------------------------
LLAMA3_SPECIALS = [  # Llama 3's ids 128000..128011, in order
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    "<|reserved_special_token_3|>",
]
LLAMA32 = dict(
    name="tiny-llama32-bf16", gguf_name="tiny-llama32-f16", gguf_outtype="f16", family="llama",
    seed=3201, hidden_size=64, n_head=4, n_kv_head=2, head_dim=16, intermediate_size=128,
    n_layer=2, rms_norm_eps=1e-5, n_positions=131072, dtype=torch.bfloat16, tie=True, style="hf",
    rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
        high_freq_factor=4.0, original_max_position_embeddings=8192,
    ),
)
# meta-llama/Llama-3.2-1B(-Instruct) config.json keys (transformers 4.45.0.dev0).
LLAMA32_HUB_KEYS = [
    "architectures", "attention_bias", "attention_dropout", "bos_token_id", "eos_token_id",
    "head_dim", "hidden_act", "hidden_size", "initializer_range", "intermediate_size",
    "max_position_embeddings", "mlp_bias", "model_type", "num_attention_heads",
    "num_hidden_layers", "num_key_value_heads", "pretraining_tp", "rms_norm_eps", "rope_scaling",
    "rope_theta", "tie_word_embeddings", "torch_dtype", "transformers_version", "use_cache",
    "vocab_size",
]
LLAMA32_TEMPLATE = os.path.join("models", "templates", "meta-llama-Llama-3.2-3B-Instruct.jinja")

# ---------------------------------------------------------------------------
# Llama 2 / SentencePiece style
# ---------------------------------------------------------------------------
SP_VOCAB = 512
SP_TRAIN = dict(
    model_type="bpe", vocab_size=SP_VOCAB, byte_fallback=True, split_digits=True,
    add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
    character_coverage=1.0, allow_whitespace_only_pieces=True,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
)
NON_ASCII_LINES = [
    "naïve café résumé Größe über fiancée",
    "日本語 ü é ñ ß",
    "Ελληνικά 日本語",
    "Ça va? Déjà vu, naïve café.",
] * 3
SP_LLAMA = dict(
    name="tiny-sp-llama-f32", gguf_name="tiny-sp-llama-f32", gguf_outtype="f32", family="llama",
    seed=3202, hidden_size=64, n_head=4, n_kv_head=4, head_dim=16, intermediate_size=128,
    n_layer=2, rms_norm_eps=1e-5, n_positions=4096, dtype=torch.float32, tie=False, style="hf",
    rope_parameters=dict(rope_type="default", rope_theta=10000.0),
)
# meta-llama/Llama-2-7b-hf config.json keys (transformers 4.31.0.dev0).
LLAMA2_HUB_KEYS = [
    "architectures", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
    "initializer_range", "intermediate_size", "max_position_embeddings", "model_type",
    "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pretraining_tp",
    "rms_norm_eps", "rope_scaling", "tie_word_embeddings", "torch_dtype", "transformers_version",
    "use_cache", "vocab_size",
]

CASE_TEXTS = [
    "Hello world",
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "To be, or not to be: that is the question.",
    "Hello, world! How are you?",
    "don't can't I'm you're",
    "(parenthesis) [brackets] {braces} \"quotes\" 'single'",
    "a-b_c/d\\e|f@g#h$i%j^k&l*m+n=o~p`q",
    "12345",
    "3.14",
    "In 1984, 42 people paid $19.99 each.",
    "0",
    "line one\nline two",
    "para one\n\npara two",
    "\n\n",
    "\tindented with a tab",
    "tab\tinside",
    "café",
    "naïve",
    "Größe",
    "Ελληνικά",
    "日本語",
    "日本語のテキスト",
    "🤖",
    "thumbs 👍🏽 up",
    "mixed: café 日本語 🤖 über",
    " leading space",
    "  two leading spaces",
    "runs   of    spaces inside",
    "trailing spaces   ",
    "",
    " ",
    "   ",
    "\n",
    " \n ",
    "text with <s> inside",
    "<s>",
    "a</s>b",
    "ALL CAPS AND lower",
]
LLAMA32_EXTRA_CASES = [
    "<|begin_of_text|>Hello",
    "Hi<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "<|endoftext|>",
]


# ---------------------------------------------------------------------------
def write_json(path, obj, indent=2, ensure_ascii=True):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=ensure_ascii) + "\n")


def write_cases(path, cases):
    """A JSON list, one case per line."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")


def write_sorted_json(path, obj):
    """As transformers' save_pretrained writes config.json / generation_config.json."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def build_llama_model(spec, vocab, bos_id, eos_id):
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["n_layer"], num_attention_heads=spec["n_head"],
        num_key_value_heads=spec["n_kv_head"], head_dim=spec["head_dim"], hidden_act="silu",
        max_position_embeddings=spec["n_positions"], rms_norm_eps=spec["rms_norm_eps"],
        rope_parameters=dict(spec["rope_parameters"]), bos_token_id=bos_id, eos_token_id=eos_id,
        tie_word_embeddings=spec["tie"], attention_bias=False, mlp_bias=False,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    mf.check_shapes(spec, cfg)
    torch.manual_seed(spec["seed"])
    model = LlamaForCausalLM(cfg)
    mf.init_weights(model, spec["seed"], "llama")
    return model.to(spec["dtype"]).eval(), cfg


def save_checkpoint(model, out_dir):
    """save_pretrained; returns what transformers 5 wrote into config.json."""
    mf.save_hf(model, out_dir, {})
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def load_reference(spec, out_dir, notes, cls=LlamaForCausalLM):
    """The fixture directory as transformers 5 loads it (as `cls`), checked against the
    file, then float64."""
    model, info, msgs = mf.load_with_report(out_dir, cls=cls, dtype=spec["dtype"])
    if info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"{spec['name']}: bad load {info}")
    for m in msgs:
        if m.strip():
            notes.append("from_pretrained log: " + " ".join(m.split())[:300])
    files, tensors = mf.stored_tensors(out_dir)
    assert files == ["model.safetensors"], files
    assert {str(v.dtype) for v in tensors.values()} == {str(spec["dtype"])}
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v), k
    assert ("lm_head.weight" in tensors) == (not spec["tie"])
    for pname, _ in model.named_parameters():
        assert pname in tensors, pname
    model = model.to(torch.float64).eval()
    model.set_attn_implementation("eager")
    return model, tensors


# ---------------------------------------------------------------------------
# References with the BOS
# ---------------------------------------------------------------------------
@torch.no_grad()
def bos_perplexity(model, ids, bos_id, token_nbytes, ctx):
    """The BOS protocol of the module docstring."""
    step = ctx - 1
    chunks = [ids[i:i + step] for i in range(0, len(ids), step)]
    chunks = [c for c in chunks if len(c) >= 1]
    per = []
    for c in chunks:
        w = [bos_id] + c
        logp = torch.log_softmax(mf.logits_for(model, w), dim=-1)
        tgt = torch.tensor(w[1:], dtype=torch.long)
        nll = -logp[:-1].gather(1, tgt[:, None])[:, 0]
        per.append((math.fsum(nll.tolist()), len(c), sum(token_nbytes(t) for t in c)))
    total = math.fsum(p[0] for p in per)
    n = sum(p[1] for p in per)
    nbytes = sum(p[2] for p in per)
    c2 = math.fsum(p[0] for p in per[:2])
    c2n = sum(p[1] for p in per[:2])
    mean = total / n
    return {
        "ppl_context": ctx,
        "ppl_tokens_scored": n,
        "ppl_nll_mean": mean,
        "ppl_perplexity": math.exp(mean),
        "ppl_bits_per_byte": (total / math.log(2.0)) / nbytes,
        "ppl_chunks2_nll_mean": c2 / c2n,
        "ppl_chunks2_tokens_scored": c2n,
    }, len(chunks), nbytes


def reference_entry(prompt_ids, logits, g_text, g_prompt, g_ids, margins, bos_id, ppl, bytes_rule):
    """The reference JSON of a fixture with a BOS (read by tests/common/mod.rs `Reference`): the
    prompt's float64 logits, the greedy prompt and continuation with their top-2 margins, the BOS
    id, the perplexity figures and the rule that counted the held-out bytes."""
    ref = {
        "prompt_text": PROMPT_TEXT,
        "prompt_ids": prompt_ids,
        "logits": [[float(v) for v in row] for row in logits.tolist()],
        "greedy_prompt_text": g_text,
        "greedy_prompt_ids": g_prompt,
        "greedy_ids": g_ids,
        "greedy_margins": margins,
        "bos_token_id": bos_id,
    }
    ref.update(ppl)
    ref["ppl_bytes_rule"] = bytes_rule
    return ref


def compute_reference(spec, cfg, model, hf_tok, heldout, bos_id, token_nbytes, bytes_rule, notes,
                      hand_check=True):
    enc = lambda t, special: hf_tok(t, add_special_tokens=special)["input_ids"]  # noqa: E731
    prompt_ids = enc(PROMPT_TEXT, True)
    assert prompt_ids[0] == bos_id and bos_id not in prompt_ids[1:], prompt_ids
    heldout_ids = enc(heldout, False)
    assert bos_id not in heldout_ids
    with mf.float64_exact(model):
        logits = mf.logits_for(model, prompt_ids)
        if hand_check:
            sd64 = dict(model.state_dict())
            hand = mf.handwritten_logits(spec, cfg, sd64, prompt_ids)
            d = float((logits - hand).abs().max())
            win = [bos_id] + heldout_ids[:PPL_CONTEXT - 1]
            dw = float((mf.logits_for(model, win) - mf.handwritten_logits(spec, cfg, sd64, win)).abs().max())
            notes.append(f"float64 check: max|HF_f64exact - handwritten| = {d:.3g} (prompt), {dw:.3g} "
                         f"(a full {len(win)}-token window); logits max |.| {float(hand.abs().max()):.3g}")
            assert d < 1e-10 and dw < 1e-10, (d, dw)
            assert model.model.norm.f64_calls >= 1 and model.model.rotary_emb.f64_calls >= 1
        prompts = [enc(text, True) for text in mf.GREEDY_PROMPT_TEXTS]
        k, g_ids, margins = mf.pick_greedy_prompt(model, prompts)
        g_text, g_prompt = mf.GREEDY_PROMPT_TEXTS[k], prompts[k]
        gen = mf.greedy_via_generate(model, g_prompt, mf.GREEDY_NEW)
        assert gen == g_ids, (gen, g_ids)
        notes.append("generate() cross-check: identical greedy ids")
        no_bos = enc(g_text, False)
        assert no_bos == g_prompt[1:], (no_bos, g_prompt)
        nb_ids, nb_margins = mf.greedy(model, no_bos, mf.GREEDY_NEW)
        notes.append(f"greedy prompt {g_text!r}: with BOS {g_prompt} -> {g_ids} (min margin {min(margins):.4f}); "
                     f"without BOS {no_bos} -> {nb_ids}; differ: {nb_ids != g_ids}")
        ppl, n_windows, nbytes = bos_perplexity(model, heldout_ids, bos_id, token_nbytes, PPL_CONTEXT)
    notes.append(f"perplexity: {len(heldout_ids)} held-out ids in {n_windows} windows of <= {PPL_CONTEXT} "
                 f"(BOS + <= {PPL_CONTEXT - 1}); {nbytes} bytes by ppl_bytes_rule vs "
                 f"{len(heldout.encode('utf-8'))} UTF-8 bytes in the text; ppl {ppl['ppl_perplexity']:.4f}, "
                 f"bpb {ppl['ppl_bits_per_byte']:.4f}")
    return reference_entry(prompt_ids, logits, g_text, g_prompt, g_ids, margins, bos_id, ppl, bytes_rule), logits


def write_reference(path, ref):
    with open(path, "w") as f:
        json.dump(ref, f)
        f.write("\n")


# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------
def gguf_field_value(reader, key):
    return reader.fields[key].contents()


def gguf_metadata_summary(path):
    reader = GGUFReader(path)
    out = {}
    for key in reader.fields:
        if not (key.startswith("tokenizer.") or key.startswith("llama.") or key.startswith("general.")):
            continue
        if key.startswith("GGUF."):
            continue
        v = gguf_field_value(reader, key)
        if isinstance(v, list) and len(v) > 8:
            v = f"[{len(v)} items: {v[:6]!r} ... {v[-2:]!r}]"
        elif isinstance(v, str) and len(v) > 120:
            v = f"<{len(v)} chars: {v[:60]!r}...>"
        out[key] = v
    return reader, out


def make_gguf(spec, args, hf_dir, cfg, hf_tensors, hf_tok, heldout, bos_id, token_nbytes, bytes_rule):
    notes = []
    path = os.path.join(GGUF_OUT, spec["gguf_name"] + ".gguf")
    # The converter names the model after its directory: convert a copy named like the fixture.
    notes += mgf.convert(args.llama_cpp, hf_dir, path, spec["gguf_outtype"])
    reader, meta = gguf_metadata_summary(path)
    reader, gg = mgf.read_gguf(path)
    arch = mgf.gguf_arch(reader)
    assert arch == "llama", arch
    types = {k: v[0] for k, v in gg.items()}
    model0 = LlamaForCausalLM(cfg)
    hf_names = [k for k, _ in model0.named_parameters()]
    sd, hf_types = mgf.to_hf_state_dict(spec, cfg, arch, gg, hf_names)
    assert set(sd) == set(hf_names), (sorted(set(hf_names) - set(sd)), sorted(set(sd) - set(hf_names)))
    for k, v in sd.items():
        want = hf_tensors[k]
        exp = want.to(torch.float16) if hf_types[k] == "F16" else want.to(torch.float32)
        if not torch.equal(v, exp.to(torch.float64)):
            raise RuntimeError(f"{path}: {k} ({hf_types[k]}) differs from the checkpoint")
    notes.append(f"GGUF tensors == checkpoint ({'rounded to f16 where F16' if spec['gguf_outtype'] == 'f16' else 'exactly'}), "
                 f"after undoing the converter's permutation")
    rf = mgf.rope_freqs_check(cfg, gg)
    if rf is not None:
        notes.append(f"rope_freqs {rf[0]} {list(rf[1])}: base/rope_freqs vs float64 llama3 rule: max rel diff {rf[2]:.3g}")
        assert rf[2] < 1e-6, rf
    model = mgf.load_reference_model(spec, cfg, sd)
    ref, _ = compute_reference(spec, cfg, model, hf_tok, heldout, bos_id, token_nbytes, bytes_rule, notes)
    ref["gguf_file"] = os.path.basename(path)
    ref["tensor_types"] = types
    write_reference(os.path.join(GGUF_OUT, spec["gguf_name"] + ".reference.json"), ref)
    counts = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    notes.append(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, sha256 {mgf.sha256(path)}, tensor types "
                 + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return notes, meta


# ---------------------------------------------------------------------------
# Fixture 1: Llama 3.2
# ---------------------------------------------------------------------------
def llama32_tokenizer(out_path):
    tok = Tokenizer.from_file(os.path.join(FIX, "tokenizer.json"))
    assert tok.get_vocab_size() == mf.TOKENIZER_VOCAB
    tok.add_special_tokens(LLAMA3_SPECIALS)
    ids = [tok.token_to_id(s) for s in LLAMA3_SPECIALS]
    assert ids == list(range(mf.TOKENIZER_VOCAB, mf.TOKENIZER_VOCAB + len(LLAMA3_SPECIALS))), ids
    bos = LLAMA3_SPECIALS[0]
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, ids[0])],
        ),
    ])
    tok.save(out_path, pretty=True)
    return {s: i for s, i in zip(LLAMA3_SPECIALS, ids)}


def llama32_tokenizer_config(tok_path, template):
    with open(tok_path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    return {
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "bos_token": "<|begin_of_text|>",
        "chat_template": template,
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def hub_config_llama32(written, spec):
    """transformers 5's config.json -> the Hub's (transformers 4.45) layout."""
    c = dict(written)
    assert c.pop("rope_parameters") == spec["rope_parameters"]
    assert c.pop("dtype") == "bfloat16"
    assert c.pop("pad_token_id", None) is None
    c.pop("transformers_version")
    rp = dict(spec["rope_parameters"])
    c["rope_theta"] = rp.pop("rope_theta")
    c["rope_scaling"] = rp  # factor, high_freq_factor, low_freq_factor, original_max_position_embeddings, rope_type
    c["torch_dtype"] = "bfloat16"
    c["transformers_version"] = "4.45.0.dev0"
    assert sorted(c) == sorted(LLAMA32_HUB_KEYS), sorted(set(c) ^ set(LLAMA32_HUB_KEYS))
    return c


def build_llama32(args, heldout):
    spec = LLAMA32
    notes = []
    out = os.path.join(FIX, spec["name"])
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tok_path = os.path.join(out, "tokenizer.json")
    sid = llama32_tokenizer(tok_path)
    vocab = Tokenizer.from_file(tok_path).get_vocab_size()
    bos = sid["<|begin_of_text|>"]
    eos = [sid["<|end_of_text|>"], sid["<|eom_id|>"], sid["<|eot_id|>"]]
    with open(os.path.join(args.llama_cpp, LLAMA32_TEMPLATE), encoding="utf-8", newline="") as f:
        template = f.read()
    write_json(os.path.join(out, "tokenizer_config.json"), llama32_tokenizer_config(tok_path, template))

    model, cfg = build_llama_model(spec, vocab, bos, eos)
    rows, kinds = mf.llama3_frequency_table(cfg)
    notes += [f"llama3 rope: {r}" for r in rows]
    written = save_checkpoint(model, out)
    notes.append(f"transformers 5 save_pretrained config.json keys: {sorted(written)} "
                 f"(rope_parameters {written.get('rope_parameters')})")
    write_sorted_json(os.path.join(out, "config.json"), hub_config_llama32(written, spec))
    write_sorted_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": bos, "do_sample": True, "eos_token_id": eos, "temperature": 0.6, "top_p": 0.9,
        "transformers_version": "4.45.0.dev0",
    })
    # transformers 5 reads the Hub layout back to the same settings.
    cfg2 = AutoConfig.from_pretrained(out)
    assert cfg2.rope_parameters == spec["rope_parameters"], cfg2.rope_parameters
    assert cfg2.max_position_embeddings == 131072 and cfg2.head_dim == 16 and cfg2.tie_word_embeddings
    assert cfg2.eos_token_id == eos and cfg2.bos_token_id == bos
    notes.append(f"AutoConfig of the Hub-style config.json: rope_parameters {cfg2.rope_parameters}, dtype {cfg2.dtype}")

    hf_tok = AutoTokenizer.from_pretrained(out)
    notes.append(f"AutoTokenizer: {type(hf_tok).__name__}, bos {hf_tok.bos_token!r}={hf_tok.bos_token_id}, "
                 f"eos {hf_tok.eos_token!r}={hf_tok.eos_token_id}, len {len(hf_tok)}")
    assert hf_tok.bos_token_id == bos and len(hf_tok) == vocab
    msgs = [{"role": "user", "content": "Hi"}]
    notes.append("apply_chat_template(user 'Hi', gen) = "
                 + repr(hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, date_string="26 Jul 2024")))

    ref_model, tensors = load_reference(spec, out, notes)
    cfg_ref = ref_model.config
    # Bytes of a byte-level BPE token: its characters mapped back through GPT-2's byte table
    # (special tokens never occur in the held-out ids); the sum is exactly the text's UTF-8 bytes.
    inv = {v: k for k, v in Tokenizer.from_file(tok_path).get_vocab().items()}
    token_nbytes = lambda t: len(mf.token_bytes(inv[t]))  # noqa: E731
    rule = ("byte-level BPE: bytes of the token's byte-level string mapped back through the GPT-2 "
            "byte table (= UTF-8 bytes of the text)")
    ref, logits = compute_reference(spec, cfg_ref, ref_model, hf_tok, heldout, bos, token_nbytes, rule, notes)
    write_reference(os.path.join(out, "reference.json"), ref)
    summary = (f"{spec['name']}: vocab {vocab}, prompt {len(ref['prompt_ids'])} ids, greedy min margin "
               f"{min(ref['greedy_margins']):.4f}, ppl {ref['ppl_perplexity']:.4f}, bpb {ref['ppl_bits_per_byte']:.4f}")

    # GGUF (from a copy named like the GGUF file; bf16 weights as stored).
    hf_dir = os.path.join(args.work_dir, spec["gguf_name"])
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    shutil.copytree(out, hf_dir, ignore=shutil.ignore_patterns("reference.json"))
    gnotes, meta = make_gguf(spec, args, hf_dir, cfg_ref, tensors, hf_tok, heldout, bos, token_nbytes, rule)
    notes += gnotes

    cases = []
    for text in CASE_TEXTS + LLAMA32_EXTRA_CASES:
        cases.append({"text": text, "hf_ids": hf_tok(text, add_special_tokens=False)["input_ids"],
                      "hf_ids_special": hf_tok(text, add_special_tokens=True)["input_ids"]})
    write_cases(os.path.join(CASES_OUT, "llama32.json"), cases)
    return summary, notes, meta


# ---------------------------------------------------------------------------
# Fixture 2: SentencePiece Llama 2
# ---------------------------------------------------------------------------
def train_sentencepiece(path):
    with open(CORPUS, "rb") as f:
        data = f.read()
    split = data.index(b"\n", int(len(data) * 0.9)) + 1
    lines = data[:split].decode("utf-8").split("\n") + NON_ASCII_LINES
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **SP_TRAIN)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return spm.SentencePieceProcessor(model_file=path)


def sp_tokenizer_config():
    tok = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": False,  # noqa: E731
                     "rstrip": False, "single_word": False}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tok("<s>"),
        "clean_up_tokenization_spaces": False,
        "eos_token": tok("</s>"),
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": tok("<unk>"),
    }


def hub_config_llama2(written):
    c = dict(written)
    assert c.pop("rope_parameters") == {"rope_type": "default", "rope_theta": 10000.0}, written
    assert c.pop("dtype") == "float32"
    for k in ("pad_token_id", "attention_bias", "attention_dropout", "mlp_bias", "head_dim",
              "transformers_version"):
        c.pop(k, None)
    c["rope_scaling"] = None
    c["torch_dtype"] = "float16"  # as Llama-2-7b-hf says; the weights here are float32
    c["transformers_version"] = "4.31.0.dev0"
    assert sorted(c) == sorted(LLAMA2_HUB_KEYS), sorted(set(c) ^ set(LLAMA2_HUB_KEYS))
    return c


def sp_piece_nbytes(sp):
    """Bytes of a SentencePiece token: <0xNN> byte-fallback pieces 1, other pieces their
    UTF-8 length with each '▁' counted as one space (so the dummy prefix '▁' of the
    first token counts 1 byte that the text does not have)."""
    table = []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if sp.is_byte(i):
            table.append(1)
        elif sp.is_control(i) or sp.is_unknown(i):
            table.append(0)
        else:
            table.append(len(p.replace("\u2581", " ").encode("utf-8")))
    return table


def build_sp_llama(args, heldout):
    spec = SP_LLAMA
    notes = []
    out = os.path.join(FIX, spec["name"])
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    sp = train_sentencepiece(os.path.join(out, "tokenizer.model"))
    assert sp.get_piece_size() == SP_VOCAB
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    pieces = [sp.id_to_piece(i) for i in range(SP_VOCAB)]
    non_ascii = [p for i, p in enumerate(pieces) if not sp.is_byte(i) and any(ord(ch) > 127 and ch != "\u2581" for ch in p)]
    multi = [p for i, p in enumerate(pieces) if not sp.is_byte(i) and not sp.is_control(i) and len(p) > 1]
    notes.append(f"sentencepiece: {SP_VOCAB} pieces, {sum(sp.is_byte(i) for i in range(SP_VOCAB))} byte pieces, "
                 f"{len(multi)} multi-char pieces, non-ASCII pieces {non_ascii}")
    assert non_ascii and multi
    write_json(os.path.join(out, "tokenizer_config.json"), sp_tokenizer_config())

    # tokenizer.json as transformers converts tokenizer.model.
    hf_tok = AutoTokenizer.from_pretrained(out)
    tmp = os.path.join(args.work_dir, "sp-convert")
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    hf_tok.save_pretrained(tmp)
    shutil.copyfile(os.path.join(tmp, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    tok_parts = {k: tj[k] for k in ("normalizer", "pre_tokenizer", "decoder", "post_processor")}
    hf_tok = AutoTokenizer.from_pretrained(out)  # now with tokenizer.json beside tokenizer.model
    notes.append(f"AutoTokenizer: {type(hf_tok).__name__}, bos {hf_tok.bos_token_id}, eos {hf_tok.eos_token_id}, "
                 f"len {len(hf_tok)}")
    assert hf_tok.bos_token_id == 1 and len(hf_tok) == SP_VOCAB

    model, cfg = build_llama_model(spec, SP_VOCAB, 1, 2)
    written = save_checkpoint(model, out)
    notes.append(f"transformers 5 save_pretrained config.json keys: {sorted(written)}")
    write_sorted_json(os.path.join(out, "config.json"), hub_config_llama2(written))
    write_sorted_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": 1, "do_sample": True, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
        "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.31.0.dev0",
    })
    cfg2 = AutoConfig.from_pretrained(out)
    assert cfg2.rope_parameters == spec["rope_parameters"], cfg2.rope_parameters
    notes.append(f"AutoConfig of the Hub-style config.json: rope_parameters {cfg2.rope_parameters}, "
                 f"dtype {cfg2.dtype}, head_dim {getattr(cfg2, 'head_dim', None)}")
    # What plain from_pretrained (no dtype) makes of torch_dtype float16 + f32 weights.
    plain = LlamaForCausalLM.from_pretrained(out)
    notes.append(f"LlamaForCausalLM.from_pretrained(dir) without dtype: parameters in {next(plain.parameters()).dtype}")
    del plain

    ref_model, tensors = load_reference(spec, out, notes)
    table = sp_piece_nbytes(sp)
    token_nbytes = lambda t: table[t]  # noqa: E731
    rule = ("sentencepiece: <0xNN> byte-fallback pieces 1 byte, other pieces the UTF-8 length of the "
            "piece with each U+2581 counted as one space byte (the dummy-prefix U+2581 of the first "
            "token counts too)")
    ref, _ = compute_reference(spec, ref_model.config, ref_model, hf_tok, heldout, 1, token_nbytes, rule, notes)
    write_reference(os.path.join(out, "reference.json"), ref)
    summary = (f"{spec['name']}: vocab {SP_VOCAB}, prompt {len(ref['prompt_ids'])} ids, greedy min margin "
               f"{min(ref['greedy_margins']):.4f}, ppl {ref['ppl_perplexity']:.4f}, bpb {ref['ppl_bits_per_byte']:.4f}")

    hf_dir = os.path.join(args.work_dir, spec["gguf_name"])
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    shutil.copytree(out, hf_dir, ignore=shutil.ignore_patterns("reference.json"))
    gnotes, meta = make_gguf(spec, args, hf_dir, ref_model.config, tensors, hf_tok, heldout, 1, token_nbytes, rule)
    notes += gnotes

    cases, differ = [], []
    for text in CASE_TEXTS:
        hf_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        sp_ids = sp.encode(text)
        cases.append({"text": text, "hf_ids": hf_ids,
                      "hf_ids_special": hf_tok(text, add_special_tokens=True)["input_ids"],
                      "sp_ids": sp_ids, "hf_differs_from_sp": hf_ids != sp_ids})
        if hf_ids != sp_ids:
            differ.append(text)
    write_cases(os.path.join(CASES_OUT, "sp-llama.json"), cases)
    notes.append(f"tokenizer cases: hf_ids != sp_ids for {differ!r}")
    return summary, notes, meta, tok_parts


def update_manifest(entries):
    """Sets tests/fixtures/gguf/manifest.json's entry of each model in `entries`
    ({model: entry}), keeping the others."""
    path = os.path.join(GGUF_OUT, "manifest.json")
    with open(path) as f:
        man = json.load(f)
    for model, entry in entries.items():
        man["models"][model] = [entry]
    with open(path, "w") as f:
        json.dump(man, f, indent=2)
        f.write("\n")


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Hub-layout fixtures with BOS (see the module docstring).")
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (convert_hf_to_gguf.py, gguf-py, models/templates)")
    ap.add_argument("--work-dir", default="/tmp/wgpt-real-build", help="scratch directory")
    ap.add_argument("--only", nargs="+", choices=["llama32", "sp-llama"])
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.llama_cpp = os.path.abspath(args.llama_cpp)
    mf.quiet_and_seeded()
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(CASES_OUT, exist_ok=True)
    with open(HELDOUT, "rb") as f:
        heldout = f.read().decode("utf-8")
    which = args.only or ["llama32", "sp-llama"]
    report = []
    if "llama32" in which:
        summary, notes, meta = build_llama32(args, heldout)
        report.append((summary, notes, meta, None))
    if "sp-llama" in which:
        summary, notes, meta, parts = build_sp_llama(args, heldout)
        report.append((summary, notes, meta, parts))
    for summary, notes, meta, parts in report:
        name = summary.split(":")[0]
        for n in notes:
            print(f"[{name}] {n}")
        if parts is not None:
            for k, v in parts.items():
                print(f"[{name}] tokenizer.json {k}: {json.dumps(v, ensure_ascii=False)}")
        for k, v in meta.items():
            print(f"[{name}] gguf {k} = {v!r}")
    for summary, *_ in report:
        print(summary)
    for d in ("tiny-llama32-bf16", "tiny-sp-llama-f32"):
        p = os.path.join(FIX, d)
        if os.path.isdir(p):
            print(f"{d}: {sum(os.path.getsize(os.path.join(p, x)) for x in os.listdir(p))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
