"""Writes a GPT-2-small-shaped model directory with random weights (HF's own initialisation)
and the GPT-2 tokenizer, for timing `wgpt generate` / `wgpt perplexity` without downloading
GPT-2. Nothing here is committed: the output goes to the directory given (default
/tmp/gpt2-random, ~500 MB in f32).

    python tools/make_gpt2_random.py [OUT_DIR] [--f16]
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

out = Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "/tmp/gpt2-random"))
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config())  # 768 wide, 12 layers, 12 heads, 50257 tokens, 1024 positions
if "--f16" in sys.argv:
    model = model.half()
model.save_pretrained(out)
repo = Path(__file__).resolve().parent.parent
shutil.copy(repo / "tests/fixtures/gpt2-tokenizer/tokenizer.json", out / "tokenizer.json")
print(f"wrote {out}: {sum(p.numel() for p in model.parameters())} parameters")
