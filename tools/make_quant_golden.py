#!/usr/bin/env python3
"""Float64 references for models quantized AT LOAD by wgpt (`LoadOptions::with_dtype`,
`--dtype q8_0|q4_0`): HF transformers in float64 on exactly the weights wgpt puts on
the GPU, so that a golden test can compare wgpt's quantized model with its own
weights at a tight tolerance instead of with the float weights at the size of the
quantization error.

Run from the repository root (needs the packages in tools/requirements.txt; no
llama.cpp, no GPU):

    python tools/make_quant_golden.py
    python tools/make_quant_golden.py --only tiny-llama-gqa-f16 --dtypes q4_0

Deterministic (one torch thread, no randomness).  Writes only
tests/fixtures/<fixture>/reference-<dtype>.json for fixture in tiny-orig-f32
(GPT-2, original OpenAI names, Conv1D weights), tiny-llama-gqa-f16 and
tiny-neox-par-f32, dtype in q8_0, q4_0; reads the fixture directories,
tests/fixtures/tokenizer.json and tests/fixtures/heldout_slice.txt.

The weights (wgpt's rule, read from the Rust code; line numbers as of this
script's writing):

  * Every WEIGHT MATRIX goes through `WeightMatrix::from_parts` as f32 values
    (`Columns::Values`) with the requested dtype: the Uploader's `storage()`
    returns `LoadOptions::dtype` whatever the file's float type
    (src/model/weights.rs:324-329; Uploader made with opts.dtype,
    src/model/mod.rs:376-379; a float checkpoint has no block tensors, so the
    `Blocks` path of weights.rs:377 is not taken).  The matrices are:
      - nn.Linear weights (N, K) (out, in), uploaded as (K, N)
        (weights.rs:538-575, `linear`, `linear_rows`, `linear_no_bias`), and
        several of them stacked into one (K, sum N) matrix (weights.rs:580-599,
        `linears_stacked`: Llama q|k|v and gate|up): Llama q/k/v/o/gate/up/down_proj
        (src/model/llama.rs:278-300), NeoX query_key_value (rows reordered to
        q|k|v by `linear_rows`, a permutation of whole rows), dense,
        dense_h_to_4h, dense_4h_to_h (src/model/neox.rs:164-176);
      - GPT-2 Conv1D weights (K, N) (in, out) taken as the matrix itself
        (weights.rs:529-536, `conv1d`): c_attn, attn.c_proj, c_fc, mlp.c_proj
        (src/model/gpt2.rs:121-128);
      - the token embedding and an untied LM head (V, C), uploaded transposed as
        a (C, V) matrix, i.e. K = C (weights.rs:620-697, `row_chunks` /
        `upload_chunk`; gpt2.rs:117,133, llama.rs:278,305, neox.rs:164,181).  A
        tied head IS the (quantized) token embedding (weights.rs:229-232).
  * Quantization (src/kernels/weight_matrix.rs:118-138, `quantize_columns`): each
    column n of the (K, N) matrix, i.e. the K weights of ONE OUTPUT FEATURE (a row
    of an nn.Linear weight / of the embedding, a COLUMN of a GPT-2 Conv1D weight),
    is quantized as one ggml row, in 32-weight blocks running along K (the input
    dimension), with ggml's reference quantization (src/quant/mod.rs:193 Q8_0,
    :210 Q4_0; byte-identical to gguf.quants.quantize per src/quant/fixtures.rs).
    How the vocabulary is split into textures and the row permutation of NeoX's
    qkv do not change any block.
  * A matrix whose K is not a multiple of 32 is NOT quantized: `storage_for`
    (weight_matrix.rs:72-79, via `row_texels` :62-70; applied in `from_parts`
    :167-176 and for embeddings weights.rs:627) stores it as F16, i.e. every
    weight rounded to f16 (`half::f16::from_f32`, round to nearest even,
    weight_matrix.rs:110), even if the file holds f32.
  * Everything that is not a matrix stays f32, untouched: biases (weights.rs:534,
    553-554, 564, 591), LayerNorm / RMSNorm weights and biases
    (weights.rs:507-527), GPT-2's position table wpe (weights.rs:607-618,
    gpt2.rs:118).  Rotary tables are computed, not weights.

Applied to the three fixtures (K % 32 != 0 -> F16):
  tiny-orig-f32      wte (K=96) quantized (also the tied head); c_attn, attn.c_proj,
                     c_fc (K=96) quantized; mlp.c_proj (K=n_inner=260) F16;
                     wpe, ln_*, biases f32.
  tiny-llama-gqa-f16 embed_tokens, lm_head (K=96), q/k/v/o_proj (K=96),
                     gate/up_proj (K=96) quantized; down_proj (K=200) F16 (the
                     file is f16 already: unchanged); RMSNorm weights f32.
  tiny-neox-par-f32  embed_in, embed_out (K=96), query_key_value, dense,
                     dense_h_to_4h (K=96) quantized; dense_4h_to_h (K=200) F16;
                     LayerNorms and biases f32.

So, per HF parameter W: quantized -> gguf.quants.dequantize(gguf.quants.quantize(R,
type), type) where R is W as float32 with one row per output feature (W itself for
nn.Linear and embeddings, W.T for Conv1D; rows of K along the last axis), mapped
back to W's layout; F16 -> W rounded to float16; else W.  The values are put into
the float64 HF model that tools/make_fixtures.py builds from the fixture
(tied weights stay tied), with its float64_exact patches.

reference-<dtype>.json has the keys of the fixture's reference.json (same prompt
ids, 13 x 389 logits, greedy prompt chosen by the same rule from the same list,
12 greedy ids + margins cross-checked with generate(), perplexity on
heldout_slice.txt with windows of n_positions) plus "weight_dtype" and
"stored_types" ({HF parameter name: "Q8_0" | "Q4_0" | "F16" | "F32"}).
Checks: the unmodified model reproduces the fixture's reference.json logits
(< 1e-12); every quantized tensor's gguf bytes dequantize to values within half a
block step of the original; for the non-GPT-2 fixtures the patched HF equals
make_fixtures.py's hand-written float64 forward on the new weights (< 1e-10).
Printed per (fixture, dtype): the max relative logit difference from the float
reference, max over prompt positions of max|new - float| / max(1, max|float|)
(tests/common/mod.rs's rel_error, with the float reference as "want"): the
quantization error the old tolerance-based test allowed for.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (reference model loading, float64 patches, protocols)

import gguf  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

FIX = mf.FIX
FIXTURES = ["tiny-orig-f32", "tiny-llama-gqa-f16", "tiny-neox-par-f32"]
DTYPES = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
BLOCK = 32
GPT2_CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


# ----------------------------------------------------------------------------
def load_fixture_model(spec, eos_id):
    """The float64 HF model exactly as tools/make_fixtures.py builds its reference."""
    out_dir = os.path.join(FIX, spec["name"])
    fam = mf.family(spec)
    if spec["style"] == "original":
        model = mf.load_original_manually(out_dir, mf.make_config(spec, eos_id))
    else:
        model, info, _ = mf.load_with_report(out_dir, cls=mf.MODEL_CLASSES[fam])
        unexpected = [k for k in info["unexpected_keys"] if not mf.is_buffer_key(k)]
        assert not (info["missing_keys"] or unexpected or info["mismatched_keys"]), info
    model = model.to(torch.float64).eval()
    model.set_attn_implementation("eager")
    return model


def classify(fam, name, shape, tied):
    """wgpt's storage of HF parameter `name` (see the module docstring):
    ("matrix", K, conv1d) or ("f32",)."""
    if len(shape) == 1:
        return ("f32",)  # biases, norm weights / biases
    assert len(shape) == 2, (name, shape)
    if fam == "gpt2":
        if name.endswith("wpe.weight"):
            return ("f32",)  # position table (Uploader::table)
        if name.endswith("wte.weight"):
            return ("matrix", shape[1], False)  # (V, C) -> (C, V)
        if name == "lm_head.weight":
            assert not tied, name  # tied: it is wte (named_parameters lists it once)
            return ("matrix", shape[1], False)
        assert name.endswith(GPT2_CONV1D), name
        return ("matrix", shape[0], True)  # Conv1D (K, N) is the matrix
    # Llama / NeoX: nn.Linear (N, K), embeddings and untied heads (V, C): K = shape[1].
    known = ("embed_tokens.weight", "embed_in.weight", "lm_head.weight", "_proj.weight",
             "query_key_value.weight", "attention.dense.weight", "dense_h_to_4h.weight",
             "dense_4h_to_h.weight")
    assert name.endswith(known), name
    return ("matrix", shape[1], False)


def stored_as(w, fam, name, tied, qtype):
    """(new float64 tensor, type name) for HF parameter `w` as wgpt stores it."""
    kind = classify(fam, name, tuple(w.shape), tied)
    if kind[0] == "f32":
        return w.detach().clone(), "F32"
    _, k, conv1d = kind
    if k % BLOCK != 0:
        # weight_matrix.rs storage_for: rows of K not whole blocks stay f16.
        return w.detach().to(torch.float32).to(torch.float16).to(torch.float64), "F16"
    rows = w.detach().to(torch.float32)
    if conv1d:
        rows = rows.T
    rows = np.ascontiguousarray(rows.numpy(), dtype=np.float32)  # (N, K): one row per output feature
    assert rows.shape[1] == k
    q = gguf.quants.quantize(rows, qtype)
    deq = gguf.quants.dequantize(q, qtype).reshape(rows.shape).astype(np.float32)
    # Sanity: every weight within half a quantization step (+ f16 rounding of d) of the input.
    blocks = rows.reshape(-1, BLOCK)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    step = amax / (127.0 if qtype == gguf.GGMLQuantizationType.Q8_0 else 8.0)
    err = np.abs(deq.reshape(-1, BLOCK) - blocks)
    lim = 0.5 * step * 1.01 + amax * 2.0 ** -10 + 1e-30
    if qtype == gguf.GGMLQuantizationType.Q4_0:
        lim = step * 1.01 + amax * 2.0 ** -10 + 1e-30  # asymmetric range: the clamp at 15 loses up to one step
    assert (err <= lim).all(), (name, float((err - lim).max()))
    out = torch.from_numpy(deq.astype(np.float64))
    if conv1d:
        out = out.T.contiguous()
    return out, gguf.GGMLQuantizationType(qtype).name


def rel_error(got, want):
    """tests/common/mod.rs rel_error per position, max over positions."""
    worst = 0.0
    for g, w in zip(got, want):
        scale = max(1.0, float(w.abs().max()))
        worst = max(worst, float((g - w).abs().max()) / scale)
    return worst


@torch.no_grad()
def reference(spec, model, tok, heldout, prompt_ids, greedy_prompts, notes):
    """make_fixtures.build_model's reference block, on `model` (float64)."""
    fam = mf.family(spec)
    cfg = model.config
    with mf.float64_exact(model):
        logits = mf.logits_for(model, prompt_ids)
        if fam != "gpt2":
            sd64 = dict(model.state_dict())
            if spec["tie"]:
                sd64["lm_head.weight"] = model.get_input_embeddings().weight.detach()
            hand = mf.handwritten_logits(spec, cfg, sd64, prompt_ids)
            d = float((logits - hand).abs().max())
            notes.append(f"float64 check: max|HF_f64exact - handwritten| = {d:.3g}")
            assert d < 1e-10, d
        k, greedy_ids, margins = mf.pick_greedy_prompt(model, greedy_prompts)
        greedy_prompt = greedy_prompts[k]
        gen_ids = mf.greedy_via_generate(model, greedy_prompt, mf.GREEDY_NEW)
        assert gen_ids == greedy_ids, (gen_ids, greedy_ids)
        ppl, _, _ = mf.perplexity(model, tok, heldout, spec["n_positions"])
    ref = {
        "prompt_ids": list(prompt_ids),
        "logits": [[float(v) for v in row] for row in logits.tolist()],
        "greedy_prompt_ids": list(greedy_prompt),
        "greedy_ids": greedy_ids,
        "greedy_margins": margins,
    }
    ref.update(ppl)
    return ref, logits


def build(name, dtypes, tok, heldout, eos_id, greedy_prompts):
    spec = next(m for m in mf.MODELS if m["name"] == name)
    fam = mf.family(spec)
    with open(os.path.join(FIX, name, "reference.json")) as f:
        float_ref = json.load(f)
    prompt_ids = float_ref["prompt_ids"]
    assert prompt_ids == mf.fixed_ids(tok, mf.PROMPT_TEXT, mf.PROMPT_LEN, eos_id)
    float_logits = torch.tensor(float_ref["logits"], dtype=torch.float64)
    lines = []
    for dt in dtypes:
        qtype = DTYPES[dt]
        model = load_fixture_model(spec, eos_id)
        tied = bool(spec["tie"])
        with mf.float64_exact(model):
            base = mf.logits_for(model, prompt_ids)
        d0 = float((base - float_logits).abs().max())
        assert d0 < 1e-12, (name, d0)
        notes = [f"unmodified model vs reference.json: max |diff| {d0:.3g}"]
        types = {}
        with torch.no_grad():
            params = dict(model.named_parameters())  # a tied head appears once (as the embedding)
            for pname, p in params.items():
                new, tname = stored_as(p, fam, pname, tied, qtype)
                p.copy_(new)
                types[pname] = tname
        if tied:
            assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)
        counts = {}
        for pname, t in types.items():
            counts.setdefault(t, []).append(pname)
        ref, logits = reference(spec, model, tok, heldout, prompt_ids, greedy_prompts, notes)
        # Same keys as reference.json, in its order, then what the weights are.
        assert list(ref) == list(float_ref), (list(ref), list(float_ref))
        ref["weight_dtype"] = dt
        ref["stored_types"] = types
        path = os.path.join(FIX, name, f"reference-{dt}.json")
        with open(path, "w") as f:
            json.dump(ref, f)
            f.write("\n")
        rel = rel_error(logits, float_logits)
        rel_inv = rel_error(float_logits, logits)
        dabs = float((logits - float_logits).abs().max())
        for t in sorted(counts):
            lines.append(f"[{name} {dt}] {t} x{len(counts[t])}: {', '.join(counts[t])}")
        for n in notes:
            lines.append(f"[{name} {dt}] {n}")
        lines.append(
            f"[{name} {dt}] wrote {os.path.relpath(path, mf.REPO_ROOT)}: max relative logit difference from the "
            f"float reference {rel:.3e} (rel_error(new, float); rel_error(float, new) {rel_inv:.3e}; max |diff| "
            f"{dabs:.4g}, float logits max |.| {float(float_logits.abs().max()):.3g}); greedy prompt "
            f"{ref['greedy_prompt_ids']} -> {ref['greedy_ids']} (min margin {min(ref['greedy_margins']):.4f}; "
            f"float reference: {float_ref['greedy_prompt_ids']} -> {float_ref['greedy_ids']}); ppl "
            f"{ref['ppl_perplexity']:.4f} (float {float_ref['ppl_perplexity']:.4f})")
        for ln in lines[-1:]:
            print(ln, flush=True)
    return lines


def parse_args(argv):
    ap = argparse.ArgumentParser(description="References for quantized-at-load models (see the module docstring).")
    ap.add_argument("--only", nargs="+", choices=FIXTURES)
    ap.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    tok = Tokenizer.from_file(os.path.join(FIX, "tokenizer.json"))
    with open(os.path.join(FIX, "heldout_slice.txt"), "rb") as f:
        heldout = f.read().decode("utf-8")
    eos_id = tok.token_to_id(mf.SPECIAL)
    greedy_prompts = [mf.fixed_ids(tok, t, mf.GREEDY_PROMPT_LEN, eos_id) for t in mf.GREEDY_PROMPT_TEXTS]
    lines = []
    for name in args.only or FIXTURES:
        lines += build(name, args.dtypes, tok, heldout, eos_id, greedy_prompts)
    print()
    for ln in lines:
        print(ln)
    return 0


if __name__ == "__main__":
    sys.exit(main())
