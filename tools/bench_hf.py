"""The Hugging Face transformers (PyTorch) rows of docs/benchmarks.md: a GPT-2-small-shaped
model with random weights, batch 1, prefill of P tokens and N decode steps with the KV cache,
mean over repetitions, on `--threads` CPU threads or on a CUDA GPU (`--device cuda`).

    python tools/bench_hf.py [--threads 2] [--device cpu|cuda] [-p 128] [-n 64] [-r 3] [--f16]
"""
import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("-p", type=int, default=128)
ap.add_argument("-n", type=int, default=64)
ap.add_argument("-r", type=int, default=3)
ap.add_argument("--f16", action="store_true")
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config()).eval().to(a.device)
if a.f16:
    model = model.half()
ids = torch.randint(0, 50257, (1, a.p)).to(a.device)


def sync():
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def prefill():
    return model(ids, use_cache=True)


@torch.inference_mode()
def decode():
    out = model(ids[:, :8], use_cache=True)
    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.n):
        out = model(nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    sync()
    return a.n / (time.perf_counter() - t0)


prefill()
pp = []
for _ in range(a.r):
    sync()
    t0 = time.perf_counter()
    prefill()
    sync()
    pp.append(a.p / (time.perf_counter() - t0))
decode()
tg = [decode() for _ in range(a.r)]
mean = lambda v: sum(v) / len(v)
where = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"{a.threads} threads"
print(f"torch {torch.__version__}, {where}, {'f16' if a.f16 else 'f32'}: "
      f"pp{a.p} {mean(pp):.1f} tok/s, tg{a.n} {mean(tg):.1f} tok/s")
