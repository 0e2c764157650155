#!/usr/bin/env python3
"""Generate reference fixtures for the `wgpt` crate from Hugging Face transformers.

Run from the repository root (needs the packages in tools/requirements.txt and
the corpus at ../shared/data/tinyshakespeare.txt):

    python tools/make_fixtures.py

The script is deterministic (fixed seeds, single thread) and overwrites the
files listed below.  It only writes under tests/fixtures/:

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
  All models: vocab_size 389 (> tokenizer's 384 on purpose), bos/eos id = id of
  `<|endoftext|>`, layer_norm_epsilon 1e-5, random weights with a larger scale
  than HF's default init (see `init_weights`).
  Each directory holds config.json, the weights, a copy of tokenizer.json
  (save_pretrained dirs also get generation_config.json) and reference.json with (all computed in float64 from the weights exactly as
  stored in the file, model.eval(), eager attention):
    prompt_ids              13 token ids
    logits                  13 x vocab_size full logits for every prompt position
    greedy_prompt_ids       5 token ids (per model: first of a fixed list of
                            prompts whose greedy margins are all >= 0.05 and
                            whose continuation has >= 3 distinct ids)
    greedy_ids              12 greedily generated ids (full recompute each step,
                            argmax, no eos stopping; cross-checked with generate())
    greedy_margins          top1 - top2 logit at each of the 12 steps
    ppl_context             window length (= n_positions)
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

At the end a one-line summary per model is printed.
"""

import inspect
import json
import logging
import math
import os
import shutil
import sys
import warnings

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel
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
]


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


@torch.no_grad()
def init_weights(model, seed):
    """Deterministic, larger-than-default random init (in f32)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())  # tied lm_head appears only once
    for name in sorted(params):
        p = params[name]
        if name.endswith("wte.weight"):
            std, mean = STD_WTE, 0.0
        elif name.endswith("wpe.weight"):
            std, mean = STD_WPE, 0.0
        elif name.endswith(".bias"):
            std, mean = STD_BIAS, 0.0
        elif ("ln_" in name) and name.endswith(".weight"):
            std, mean = STD_LN, 1.0
        elif name.endswith(".weight"):  # Conv1D weights and untied lm_head
            std, mean = STD_LINEAR, 0.0
        else:
            raise RuntimeError(f"unhandled parameter {name}")
        vals = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean
        p.copy_(vals.to(p.dtype))


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def load_with_report(path, **kwargs):
    """from_pretrained, returning (model, loading_info, captured messages)."""
    cap = LogCapture()
    hf_logger = hf_logging.get_logger("transformers")
    hf_logger.addHandler(cap)
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        model, info = GPT2LMHeadModel.from_pretrained(
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
def greedy_via_generate(model, prompt, n_new):
    x = torch.tensor([prompt], dtype=torch.long)
    out = model.generate(
        x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, min_new_tokens=n_new,
        do_sample=False, num_beams=1, repetition_penalty=1.0, pad_token_id=model.config.eos_token_id,
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
    out_dir = os.path.join(FIX, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    cfg = make_config(spec, eos_id)
    torch.manual_seed(spec["seed"])
    model = GPT2LMHeadModel(cfg)
    init_weights(model, spec["seed"])
    model = model.to(spec["dtype"])
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())

    notes = []
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
        save_hf(model, out_dir, spec)
        ref_model, info, msgs = load_with_report(out_dir)
        bad = [m for m in msgs if ("missing" in m.lower() or "unexpected" in m.lower()
                                   or "not initialized" in m.lower() or "newly" in m.lower())]
        if info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"] or bad:
            raise RuntimeError(f"{name}: bad load: {info} {bad}")
        for m in msgs:
            if m.strip():
                notes.append("from_pretrained log: " + " ".join(m.split())[:300])

    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))

    # Check what is actually in the file(s).
    files, tensors = stored_tensors(out_dir)
    dtypes = sorted({str(v.dtype) for k, v in tensors.items() if not k.endswith("attn.bias")
                     and not k.endswith("masked_bias")})
    assert dtypes == [str(spec["dtype"])], (name, dtypes)
    if not spec["tie"]:
        assert "lm_head.weight" in tensors, f"{name}: lm_head.weight missing from file"
        assert not torch.equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"])
    else:
        assert "lm_head.weight" not in tensors
    if "max_shard_size" in spec:
        assert os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
        assert len(files) >= 2, files

    # The reference model must hold exactly the stored values.
    ref_sd = ref_model.state_dict()
    prefix = "" if spec["style"] == "hf" else "transformer."
    for k, v in tensors.items():
        if k.endswith("attn.bias") or k.endswith("masked_bias"):
            continue
        assert torch.equal(ref_sd[prefix + k], v), k
    if not spec["tie"]:
        assert ref_model.lm_head.weight.data_ptr() != ref_model.transformer.wte.weight.data_ptr()
    else:
        assert torch.equal(ref_model.lm_head.weight, ref_model.transformer.wte.weight)

    ref_model = ref_model.to(torch.float64).eval()
    ref_model.set_attn_implementation("eager")
    assert ref_model.config._attn_implementation == "eager"

    logits = logits_for(ref_model, prompt_ids)
    best = None
    for gp in greedy_prompts:
        g_ids, g_margins = greedy(ref_model, gp, GREEDY_NEW)
        good = min(g_margins) >= GREEDY_MIN_MARGIN
        varied = len(set(g_ids)) >= GREEDY_MIN_DISTINCT
        key = (good and varied, good, len(set(g_ids)), min(g_margins))
        if best is None or key > best[0]:
            best = (key, gp, g_ids, g_margins)
        if good and varied:
            break
    _, greedy_prompt, greedy_ids, margins = best
    try:
        gen_ids = greedy_via_generate(ref_model, greedy_prompt, GREEDY_NEW)
        if gen_ids != greedy_ids:
            raise RuntimeError(f"{name}: generate() {gen_ids} != manual greedy {greedy_ids}")
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
        f"{name:17s} params={n_params:7d} dtype={str(spec['dtype']).replace('torch.', ''):8s} "
        f"files={len(files)} logits_std={float(logits.std()):.3f} "
        f"greedy_prompt={greedy_prompt} min_greedy_margin={min(margins):.4f} ppl={ppl['ppl_perplexity']:.3f} "
        f"bpb={ppl['ppl_bits_per_byte']:.4f} heldout_ids={n_ids} windows={n_windows}"
    )
    return summary, notes


def main():
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    np.random.seed(0)
    os.makedirs(FIX, exist_ok=True)

    tok, tok_path, heldout, start = build_tokenizer_and_slice()
    eos_id = tok.token_to_id(SPECIAL)
    assert eos_id is not None
    prompt_ids = fixed_ids(tok, PROMPT_TEXT, PROMPT_LEN, eos_id)
    greedy_prompts = [fixed_ids(tok, t, GREEDY_PROMPT_LEN, eos_id) for t in GREEDY_PROMPT_TEXTS]
    print(f"tokenizer: vocab={tok.get_vocab_size()} eos_id={eos_id} heldout_start_byte={start}")
    print(f"prompt_ids={prompt_ids}")

    summaries, all_notes = [], []
    for spec in MODELS:
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
