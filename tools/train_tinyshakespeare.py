#!/usr/bin/env python3
"""Train the small default GPT-2 model that `wgpt` ships in `assets/model/`.

Run from the repository root:

    python tools/train_tinyshakespeare.py

(with torch, transformers, safetensors, tokenizers and numpy installed, see
`tools/requirements.txt`).  Optional flags: `--threads N` (torch CPU threads,
default 2), `--steps N` (override the number of optimiser steps, e.g. for a quick
smoke run), `--out DIR` (default `assets/model`), `--no-fixture` (do not rewrite
`tests/fixtures/default-model/`).

Data split
----------
Input: `tools/data/tinyshakespeare.txt` (1,115,394 bytes, a copy of the classic
"tiny shakespeare" corpus).  Let `cut = int(0.9 * len(bytes))` and `nl` the
position of the first b"\\n" at or after `cut` (here cut = 1,003,854 and
nl = 1,003,855).  train = bytes[:nl + 1] (1,003,856 bytes), held-out =
bytes[nl + 1:] (111,538 bytes).  The held-out 10% is never seen by tokenizer
training, model training or model selection; it is only scored once at the end
for reporting.  The script writes it to `tools/data/tinyshakespeare-valid.txt`.
Inside the training split, the last 5% (cut after a newline in the same way) is
kept aside as a "dev" slice used only to pick the best checkpoint; the model
is trained on random windows of the first 95% of the training split.

Tokenizer
---------
Byte-level BPE trained with HF `tokenizers` on the training split only:
ByteLevel pre-tokenizer (GPT-2 regex, add_prefix_space=False), ByteLevel
decoder, initial alphabet = all 256 byte symbols (`ByteLevel.alphabet()`), so
any byte sequence is encodable, vocabulary of VOCAB_SIZE = 2048 entries
including the single special token `<|endoftext|>` (id 0, used as bos/eos).
Saved as `assets/model/tokenizer.json`.

Architecture
------------
`transformers.GPT2LMHeadModel` (pre-LayerNorm blocks, learned absolute position
embeddings, "gelu_new" MLP activation, LM head tied to the token embedding),
so the output is directly in the Hugging Face GPT-2 layout:
n_layer = 4, n_head = 4, n_embd = 192, n_positions (context) = 256,
vocab_size = 2048 (= tokenizer vocabulary), 2,222,208 parameters.
Saved in float32 as `config.json` + `model.safetensors` (~9 MB; the directory
also gets `generation_config.json` and `tokenizer.json`).

Hyperparameters
---------------
AdamW (betas 0.9/0.95, weight decay 0.1 on matrices only), peak learning rate
2.5e-3 reached after 50 linear warm-up steps, then cosine decay to 1e-4;
batch of 16 random windows of 257 tokens (256 inputs + shifted targets) from
the first 95% of the training split; dropout 0.1 (embeddings, attention,
residual); gradient clipping at 1.0; torch/numpy seed 1337.  bfloat16
autocast for the forward pass (float32 master weights) where the CPU runs
bfloat16 matmuls faster than float32 (`--bf16 auto`, the default, times one
512x512 product of each, so on a busy or borderline machine the choice can
differ between runs: pass `on`/`off` for a reproducible run).  It matters: on a CPU with
native bf16 (AVX512-BF16) the shipped model's run did 4000 steps in 48 min;
on an AMD EPYC (Zen 3, AVX2 only) bf16 matmuls ran ~140x slower than f32 and
f32 training does ~2,900 tokens/s, about a third of those steps in the budget.
The cosine schedule is driven by progress = max(step / 4000,
elapsed / 48-minute time budget): on an idle, fast enough 2-core machine the
run does exactly 4000 steps (16.4 M tokens, deterministic for a given machine
and torch build), while on a slower or busy machine the schedule completes
early when the wall clock budget is used up, so the script always stays
under an hour.  The
dev slice is evaluated every 200 steps and at the end; the checkpoint with the
lowest dev loss is the one saved.

Evaluation (bits per byte)
--------------------------
After saving, the model is reloaded with
`GPT2LMHeadModel.from_pretrained(out_dir)` and scored on the held-out text:
the whole text is tokenized (no special tokens), the token ids are split into
consecutive non-overlapping windows of n_positions tokens (the last one may be
shorter, a final window with fewer than 2 tokens is skipped), and in each
window every token after the first is scored given the previous tokens of that
window.  bits_per_byte = (sum of NLL in nats / ln 2) / (sum of the UTF-8 byte
lengths of the scored tokens), the byte length of a token being the number of
bytes its byte-level string maps back to through the inverse of GPT-2's
`bytes_to_unicode` table.  The same procedure, in float64, on the first 3,000
bytes of the held-out text gives `tests/fixtures/default-model/reference.json`
(next to the slice itself, `heldout_slice.txt`), used by the Rust tests.

Expected runtime and result
---------------------------
On a 2-core x86-64 CPU (2 torch threads) the whole script takes about 50
minutes; see the numbers printed at the end ("training time", "held-out loss",
"held-out bits per byte").  The shipped model (bf16 run, 4000 steps): held-out
loss 4.71 nats/token, 2.657 bits per byte, above the 2.5 the project asks for.
Runs measured while looking for more (held-out bits per byte): n_embd 256,
2500 steps, 2.645; n_embd 192, dropout 0.2, f32 on Zen 3 (1373 steps in 45
minutes), 2.689.  The model overfits this 330k-token training set (train loss
~3.2 against ~4.7 held out) and, at this compute, more regularisation leaves it
under-trained; the dev slice (end of the training split) is also easier than
the held-out text (4.52 against 4.77 nats/token in the last run), so it ranks
checkpoints but does not predict the held-out figure.  Exact values of a run
are printed at the end and stored in `tests/fixtures/default-model/reference.json`
for the 3,000-byte slice.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel

# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------
SEED = 1337
VOCAB_SIZE = 2048
EOS = "<|endoftext|>"
N_POSITIONS = 256
N_LAYER = 4
N_HEAD = 4
N_EMBD = 192
DROPOUT = 0.1
BATCH = 16
STEPS = 4000
TIME_BUDGET_S = 48 * 60
WARMUP = 50
LR_MAX = 2.5e-3
LR_MIN = 1e-4
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
EVAL_EVERY = 200
DEV_FRACTION = 0.05

DATA_PATH = "tools/data/tinyshakespeare.txt"
VALID_PATH = "tools/data/tinyshakespeare-valid.txt"
FIXTURE_DIR = "tests/fixtures/default-model"
FIXTURE_BYTES = 3000


def split_after_newline(data: bytes, fraction: float):
    """Split after the first newline at or after byte int(fraction*len)."""
    cut = int(fraction * len(data))
    nl = data.index(b"\n", cut)
    return data[: nl + 1], data[nl + 1 :]


def gpt2_bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode char table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in gpt2_bytes_to_unicode().items()}


def token_byte_lengths(tok: Tokenizer, vocab_size: int):
    """Byte length of each token id (0 for special tokens / unused ids)."""
    lens = np.zeros(vocab_size, dtype=np.int64)
    for i in range(tok.get_vocab_size()):
        s = tok.id_to_token(i)
        if s is None or s == EOS:
            continue
        raw = bytes(UNICODE_TO_BYTE[c] for c in s)
        lens[i] = len(raw)
    return lens


def bf16_is_faster() -> bool:
    """Times one 512x512 matmul in bf16 and in f32 (after a warm-up of each)."""
    a = torch.randn(512, 512)
    times = {}
    for dt in (torch.float32, torch.bfloat16):
        x = a.to(dt)
        x @ x
        t = time.perf_counter()
        for _ in range(3):
            x @ x
        times[dt] = time.perf_counter() - t
    return times[torch.bfloat16] < times[torch.float32]


def train_tokenizer(train_text: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = train_text.splitlines(keepends=True)
    chunks = ["".join(lines[i : i + 200]) for i in range(0, len(lines), 200)]
    tok.train_from_iterator(chunks, trainer=trainer)
    return tok


@torch.no_grad()
def score_windows(model, ids, byte_lens, ctx, dtype=torch.float32, batch=16):
    """Non-overlapping-window NLL as defined in the module docstring.

    Returns (sum_nll_nats, tokens_scored, bytes_scored)."""
    model.eval()
    windows = [ids[i : i + ctx] for i in range(0, len(ids), ctx)]
    windows = [w for w in windows if len(w) >= 2]
    total_nll = 0.0
    total_tok = 0
    total_bytes = 0
    # full-length windows can be batched; a shorter last one goes alone
    full = [w for w in windows if len(w) == ctx]
    rest = [w for w in windows if len(w) != ctx]
    groups = [full[i : i + batch] for i in range(0, len(full), batch)] + [[w] for w in rest]
    for g in groups:
        x = torch.tensor(np.stack(g), dtype=torch.long)
        logits = model(input_ids=x).logits.to(torch.float64)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tgt = x[:, 1:]
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        total_nll += float(nll.sum())
        total_tok += int(tgt.numel())
        total_bytes += int(byte_lens[tgt.numpy()].sum())
    return total_nll, total_tok, total_bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--time-budget", type=float, default=TIME_BUDGET_S,
                    help="training wall-clock budget in seconds (default %(default)s)")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bfloat16 autocast for the forward pass; auto: only where bf16 "
                    "matmuls are faster than f32 on this CPU (default)")
    ap.add_argument("--out", default="assets/model")
    ap.add_argument("--no-fixture", action="store_true")
    args = ap.parse_args()

    if not os.path.exists(DATA_PATH):
        sys.exit(f"{DATA_PATH} not found: run from the repository root")
    torch.set_num_threads(args.threads)
    use_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and bf16_is_faster())
    print(f"bfloat16 autocast: {'on' if use_bf16 else 'off'}")
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    t_start = time.time()

    # ---------------------------------------------------------------- data
    data = open(DATA_PATH, "rb").read()
    train_bytes, valid_bytes = split_after_newline(data, 0.9)
    with open(VALID_PATH, "wb") as f:
        f.write(valid_bytes)
    fit_bytes, dev_bytes = split_after_newline(train_bytes, 1.0 - DEV_FRACTION)
    print(
        f"data: {len(data)} bytes; train {len(train_bytes)} (fit {len(fit_bytes)}, "
        f"dev {len(dev_bytes)}); held-out {len(valid_bytes)} -> {VALID_PATH}"
    )
    train_text = train_bytes.decode("utf-8")

    # ----------------------------------------------------------- tokenizer
    tok = train_tokenizer(train_text)
    eos_id = tok.token_to_id(EOS)
    vocab = tok.get_vocab_size()
    assert vocab <= VOCAB_SIZE
    byte_lens = token_byte_lengths(tok, VOCAB_SIZE)

    def encode(b: bytes):
        return np.array(tok.encode(b.decode("utf-8"), add_special_tokens=False).ids, dtype=np.int64)

    fit_ids = encode(fit_bytes)
    dev_ids = encode(dev_bytes)
    valid_ids = encode(valid_bytes)
    print(
        f"tokenizer: vocab {vocab}, eos id {eos_id}; fit {len(fit_ids)} tokens "
        f"({len(fit_bytes) / len(fit_ids):.2f} bytes/token), dev {len(dev_ids)}, "
        f"held-out {len(valid_ids)}"
    )

    # --------------------------------------------------------------- model
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=N_POSITIONS,
        n_embd=N_EMBD,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        activation_function="gelu_new",
        resid_pdrop=DROPOUT,
        embd_pdrop=DROPOUT,
        attn_pdrop=DROPOUT,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: n_layer {N_LAYER}, n_head {N_HEAD}, n_embd {N_EMBD}, ctx {N_POSITIONS}, "
        f"vocab {VOCAB_SIZE}, {n_params} parameters"
    )

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=LR_MAX,
        betas=(0.9, 0.95),
    )

    steps = args.steps
    budget = args.time_budget

    def cosine(p):
        return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * min(1.0, p)))

    rng = np.random.default_rng(SEED)
    fit_t = torch.from_numpy(fit_ids)

    def batch():
        starts = rng.integers(0, len(fit_ids) - N_POSITIONS - 1, size=BATCH)
        return torch.stack([fit_t[s : s + N_POSITIONS + 1] for s in starts])

    def dev_loss():
        nll, ntok, _ = score_windows(model, dev_ids, byte_lens, N_POSITIONS)
        model.train()
        return nll / ntok

    # Schedule: linear warm-up over WARMUP steps, then cosine decay driven by
    # progress = max(step fraction, wall-clock fraction of the time budget), so
    # an idle machine runs exactly `steps` steps (deterministic) while a busy
    # one finishes the schedule early instead of overrunning the budget.
    best = (float("inf"), -1)
    best_state = None
    t_train = time.time()
    t_warm = None
    model.train()
    step = 0
    progress = 0.0
    while progress < 1.0:
        now = time.time() - t_train
        if step < WARMUP:
            lr = LR_MAX * (step + 1) / WARMUP
        else:
            if t_warm is None:
                t_warm = now
            progress = max(
                (step - WARMUP) / max(1, steps - WARMUP),
                (now - t_warm) / max(1e-9, budget - t_warm),
            )
            if progress >= 1.0:
                break
            lr = cosine(progress)
        for g in opt.param_groups:
            g["lr"] = lr
        xy = batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=xy[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        step += 1
        if step % 20 == 1:
            el = time.time() - t_train
            print(
                f"step {step:5d} loss {loss.item():.4f} lr {lr:.2e} progress {progress:.3f} "
                f"{el:7.1f}s ({step * BATCH * N_POSITIONS / max(el, 1e-9):.0f} tok/s)",
                flush=True,
            )
        if step % EVAL_EVERY == 0:
            dl = dev_loss()
            tag = ""
            if dl < best[0]:
                best = (dl, step)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                tag = " (best)"
            print(f"step {step:5d} dev loss {dl:.4f}{tag}", flush=True)
    if step % EVAL_EVERY != 0:
        dl = dev_loss()
        tag = ""
        if dl < best[0]:
            best = (dl, step)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            tag = " (best)"
        print(f"step {step:5d} dev loss {dl:.4f}{tag}", flush=True)
    train_time = time.time() - t_train
    print(f"training time: {train_time:.1f} s ({train_time / 60:.1f} min), {step} steps, "
          f"{step * BATCH * N_POSITIONS} tokens; best dev loss {best[0]:.4f} at step {best[1]}")
    model.load_state_dict(best_state)

    # ---------------------------------------------------------------- save
    out = args.out
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"saved {sorted(os.listdir(out))} to {out}: {size} bytes ({size / 1e6:.2f} MB)")

    # ------------------------------------------------------ held-out score
    tok2 = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    lens2 = token_byte_lengths(tok2, VOCAB_SIZE)
    valid_text = valid_bytes.decode("utf-8")
    ids = np.array(tok2.encode(valid_text, add_special_tokens=False).ids, dtype=np.int64)
    assert tok2.decode(ids.tolist()) == valid_text
    saved = GPT2LMHeadModel.from_pretrained(out)
    nll, ntok, nbytes = score_windows(saved, ids, lens2, saved.config.n_positions)
    print(
        f"held-out: {ntok} tokens scored, {nbytes} bytes; loss {nll / ntok:.4f} nats/token, "
        f"perplexity {math.exp(nll / ntok):.2f}, bits per byte {nll / math.log(2) / nbytes:.4f}"
    )

    # --------------------------------------------------------- rust fixture
    if not args.no_fixture:
        os.makedirs(FIXTURE_DIR, exist_ok=True)
        slice_bytes = valid_bytes[:FIXTURE_BYTES]
        with open(os.path.join(FIXTURE_DIR, "heldout_slice.txt"), "wb") as f:
            f.write(slice_bytes)
        m64 = GPT2LMHeadModel.from_pretrained(out, dtype=torch.float64)
        sids = np.array(tok2.encode(slice_bytes.decode("utf-8"), add_special_tokens=False).ids, dtype=np.int64)
        n64, t64, b64 = score_windows(m64, sids, lens2, m64.config.n_positions)
        ref = {
            "ppl_context": int(m64.config.n_positions),
            "ppl_tokens_scored": int(t64),
            "ppl_nll_mean": n64 / t64,
            "ppl_perplexity": math.exp(n64 / t64),
            "ppl_bits_per_byte": n64 / math.log(2) / b64,
        }
        with open(os.path.join(FIXTURE_DIR, "reference.json"), "w") as f:
            json.dump(ref, f, indent=2)
            f.write("\n")
        print(f"fixture: {json.dumps(ref)}")

    print(f"total time: {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
