#!/usr/bin/env python3
"""Bit-exactness fixtures for ggml's block formats, from the `gguf` Python package.

Run from the repository root (needs numpy and gguf, see tools/requirements.txt):

    python tools/make_quant_fixtures.py
    python tools/make_quant_fixtures.py --check-ggml /work/peers/llama.cpp/build/bin/libggml-base.so

With --check-ggml every case is also compared bit for bit with ggml's own C code
(quantize_row_q8_0_ref / quantize_row_q4_0_ref, dequantize_row_<type>) loaded
from a built libggml-base.

Deterministic (fixed seeds, no threads); rewrites tests/fixtures/quant/ (only
that directory).  Everything is raw little-endian binary plus manifest.json, so
that Rust reads it without extra crates:

  quantize_input.f32.bin       8 rows x 256 f32 inputs (normal values of several
                               scales and edge-case rows, see `quantize_input`)
  quantize_<type>.blocks.bin   the bytes gguf.quants.quantize(x, <type>) writes,
                               for type in q8_0, q4_0 (8 rows x 256/32 blocks)
  quantize_<type>.roundtrip.f32.bin
                               gguf.quants.dequantize of those bytes (f32)
  dequant_<type>.blocks.bin    random-but-valid block bytes (random quants and
                               scale bytes; the f16 d / m / dmin fields set to
                               finite values of realistic size, including
                               negative d, a zero d, a -0.0 d and f16 subnormals)
  dequant_<type>.f32.bin       gguf.quants.dequantize of those bytes (f32)
                               for type in q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k,
                               4 rows x 512 weights each
  manifest.json                one entry per case: name, kind ("quantize" or
                               "dequantize"), ggml_type (GGML name, e.g. "Q4_K"),
                               ggml_type_id, shape [rows, row_len] (in weights),
                               block_size, type_size (bytes per block), input,
                               input_dtype ("f32" or "blocks"), expected,
                               expected_dtype, and for "quantize" cases
                               roundtrip (f32 file); sha256 of every file; the
                               gguf / numpy versions used; a note per case.

Notes:
- -0.0 appears in the quantize inputs and as one block's d in the dequantize
  inputs of every type: -0.0 * q gives -0.0 (or +0.0 for q of the other sign),
  so a comparison of bit patterns (not ==) also checks the sign of zeros.
- Q4_0 quantization computes id = 1/d from the float32 d = max / -8 (not from the
  f16 d that is stored), as ggml's quantize_row_q4_0_ref does; likewise Q8_0 with
  d = amax / 127 and round-half-away-from-zero.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "quant")

QUANTIZE_TYPES = ["Q8_0", "Q4_0"]
DEQUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
QUANT_ROWS, QUANT_ROW_LEN = 8, 256
DEQ_ROWS, DEQ_ROW_LEN = 4, 512


def f32(a):
    return np.asarray(a, dtype=np.float32)


def quantize_input():
    """8 rows x 256 float32 values (8 blocks of 32 per row)."""
    rng = np.random.default_rng(15001)
    n = QUANT_ROW_LEN
    rows = []
    # Row 0: standard normal.  Row 1: weights-like scale 0.02.
    rows.append(rng.standard_normal(n))
    rows.append(0.02 * rng.standard_normal(n))
    # Row 2: each block its own scale, 1e-4 ... 3e4 (the largest keeps d finite in f16).
    scales = [1e-4, 1e-3, 0.05, 0.7, 3.0, 100.0, 1e4, 3e4]
    rows.append(np.concatenate([s * rng.standard_normal(32) for s in scales]))
    # Row 3: structural edge blocks.
    b = []
    b.append(np.zeros(32))                                 # all zero (d = 0, id = 0)
    x = 0.3 * rng.standard_normal(32); x[5] = -2.0; b.append(x)   # max magnitude negative
    x = 0.3 * rng.standard_normal(32); x[3] = 1.5; x[20] = -1.5; b.append(x)  # tie, + first
    x = 0.3 * rng.standard_normal(32); x[3] = -1.5; x[20] = 1.5; b.append(x)  # tie, - first
    b.append(np.full(32, 0.25))                            # constant positive
    b.append(np.full(32, -0.75))                           # constant negative
    x = np.zeros(32); x[31] = 3.0; x[0] = -0.0; b.append(x)   # one nonzero at the end, -0.0
    b.append(np.where(np.arange(32) % 2 == 0, 1.0, -1.0) * np.linspace(0.1, 1.0, 32))  # alternating
    rows.append(np.concatenate(b))
    # Row 4: exact rounding boundaries.
    b = []
    # Q8_0 with d = 1 (amax 127): x*id = k + 0.5 exactly -> round half away from zero.
    x = np.array([127.0] + [k + 0.5 for k in range(-15, 16)]); b.append(x)
    x = np.array([-127.0] + [k + 0.5 for k in range(-40, 80, 4)] + [126.5]); b.append(x)
    # Q4_0 with d = 1 (max -8): x + 8.5 hits integers; trunc boundaries.
    x = np.array([-8.0] + [k + 0.5 for k in range(-8, 8)] + [k - 0.49 for k in range(-7, 8)]); b.append(x)
    # Q4_0 with d = -2 (max +16 -> d = -2, id = -0.5): odd integers land on .5.
    x = np.array([16.0] + [float(k) for k in range(-15, 16, 1)]); b.append(x)
    # Q4_0 with d = 0.5 (max -4): quarter steps.
    x = np.array([-4.0] + [0.25 * k for k in range(-15, 16)]); b.append(x)
    # Q8_0 with d = 0.5 (amax 63.5): multiples of 0.25 -> .5 boundaries.
    x = np.array([63.5] + [0.25 * k + 0.125 for k in range(-15, 16)]); b.append(x)
    # Values just below / above .5 after scaling by 1/d (d = 1).
    x = np.array([127.0] + [k + 0.5 - 2.0 ** -20 for k in range(15)] + [k + 0.5 + 2.0 ** -20 for k in range(16)])
    b.append(x)
    x = np.array([-8.0] + [k + 0.5 - 2.0 ** -18 for k in range(-7, 8)] + [k + 0.5 + 2.0 ** -18 for k in range(-8, 8)])
    b.append(x)
    rows.append(np.concatenate(b))
    # Row 5: tiny values (f16 d underflows to a subnormal or to zero; f32 d stays normal).
    tiny = [1e-30, 1e-20, 1e-12, 3e-8, 6e-6, 1e-5, 6e-5, 1e-4]
    rows.append(np.concatenate([t * rng.standard_normal(32) for t in tiny]))
    # Row 6: large values.
    b = [1e4 * rng.standard_normal(32), np.full(32, 1e4), -1e4 * np.abs(rng.standard_normal(32)),
         np.linspace(-3e4, 3e4, 32), 5e3 * rng.standard_normal(32), 2e4 * rng.uniform(-1, 1, 32),
         np.concatenate([np.full(16, 1e4), np.full(16, -1e4)]), 1e3 * rng.standard_normal(32)]
    rows.append(np.concatenate(b))
    # Row 7: uniform, with -0.0 and +0.0 sprinkled in.
    x = rng.uniform(-1.0, 1.0, n)
    x[::17] = -0.0
    x[5::23] = 0.0
    rows.append(x)
    out = f32(np.stack(rows))
    assert out.shape == (QUANT_ROWS, QUANT_ROW_LEN) and np.isfinite(out).all()
    return out


# f16 field values used for d / m / dmin of the random blocks.
def f16_field(rng, n, kind):
    """n float16 values for a block field; kind 'd' (block scale), 'kd' (K super-block
    scale), 'm' (Q4_1/Q5_1 offset), 'dmin' (K super-block min scale)."""
    if kind == "d":
        mag = 10.0 ** rng.uniform(-4, -1.5, n)   # ~1e-4 .. 3e-2
    elif kind == "kd":
        mag = 10.0 ** rng.uniform(-5, -2.5, n)   # ~1e-5 .. 3e-3 (times 6-bit scales)
    elif kind == "dmin":
        mag = 10.0 ** rng.uniform(-5, -2.5, n)
    else:  # m
        mag = 10.0 ** rng.uniform(-3, -0.5, n)
    sign = np.where(rng.uniform(size=n) < 0.25, -1.0, 1.0)
    return (sign * mag).astype(np.float16)


def random_blocks(qtype_name, n_blocks, rng):
    """Random valid blocks: random bytes, then the f16 fields overwritten."""
    qt = T[qtype_name]
    bs, ts = GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    # Offsets of the f16 fields (in bytes) and their kinds.
    fields = {
        "Q8_0": [(0, "d")], "Q4_0": [(0, "d")], "Q5_0": [(0, "d")],
        "Q4_1": [(0, "d"), (2, "m")], "Q5_1": [(0, "d"), (2, "m")],
        "Q4_K": [(0, "kd"), (2, "dmin")], "Q5_K": [(0, "kd"), (2, "dmin")],
        "Q6_K": [(208, "kd")],
    }[qtype_name]
    for off, kind in fields:
        vals = f16_field(rng, n_blocks, kind)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    # Special scale values in a few fixed blocks (first field = d):
    d_off = fields[0][0]
    specials = {
        1: np.float16(0.0),          # zero d
        2: np.float16(-0.0),         # negative zero d
        3: np.float16(-0.01 if fields[0][1] == "d" else -0.001),  # negative d
        4: np.float16(2.0 ** -20),   # f16 subnormal d (smallest normal is 2^-14)
        5: np.float16(65504.0 / 2 ** 20),  # larger d with many mantissa bits
    }
    for blk, v in specials.items():
        if blk < n_blocks:
            raw[blk, d_off:d_off + 2] = np.array([v], dtype=np.float16).view(np.uint8)
    # Second field (m / dmin): a zero and a negative one.
    if len(fields) > 1:
        m_off = fields[1][0]
        raw[6 % n_blocks, m_off:m_off + 2] = np.array([0.0], dtype=np.float16).view(np.uint8)
        raw[7 % n_blocks, m_off:m_off + 2] = np.array([-0.002], dtype=np.float16).view(np.uint8)
    # Extreme quant bytes in two blocks: all 0x00 and all 0xFF outside the f16 fields.
    field_bytes = set()
    for off, _ in fields:
        field_bytes |= {off, off + 1}
    other = [i for i in range(ts) if i not in field_bytes]
    if n_blocks > 9:
        raw[8, other] = 0x00
        raw[9, other] = 0xFF
    # Every f16 field finite.
    for off, _ in fields:
        v = raw[:, off:off + 2].copy().view(np.float16)
        assert np.isfinite(v).all(), qtype_name
    return raw


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write(path, arr):
    arr = np.ascontiguousarray(arr)
    assert arr.dtype in (np.float32, np.uint8)
    with open(path, "wb") as f:
        f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def check_against_ggml(lib_path, cases):
    """Cross-check every case with ggml's own C reference code (libggml-base):
    quantize_row_<type>_ref and dequantize_row_<type>; bitwise comparison."""
    lib = ctypes.CDLL(lib_path)
    for c in cases:
        lo = c["ggml_type"].lower().replace("_k", "_K")  # C names: q4_0, q4_K
        rows, row_len = c["shape"]
        n = rows * row_len
        if c["kind"] == "quantize":
            x = np.fromfile(os.path.join(OUT, c["input"]), dtype="<f4")
            want = np.fromfile(os.path.join(OUT, c["expected"]), dtype=np.uint8)
            got = np.zeros_like(want)
            fn = getattr(lib, f"quantize_row_{lo}_ref")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn(x.ctypes.data, got.ctypes.data, n)
        else:
            blocks = np.fromfile(os.path.join(OUT, c["input"]), dtype=np.uint8)
            want = np.fromfile(os.path.join(OUT, c["expected"]), dtype="<f4").view(np.uint32)
            got = np.zeros(n, dtype=np.float32)
            fn = getattr(lib, f"dequantize_row_{lo}")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn(blocks.ctypes.data, got.ctypes.data, n)
            got = got.view(np.uint32)
        same = np.array_equal(got, want)
        print(f"ggml C check {c['name']:22s}: {'bit-identical' if same else 'MISMATCH'}"
              + ("" if same else f" ({int((got != want).sum())} of {want.size} differ)"))
        if not same:
            raise SystemExit(f"{c['name']}: gguf-py and ggml disagree")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write tests/fixtures/quant/ (see the module docstring).")
    ap.add_argument("--check-ggml", metavar="LIBGGML_BASE",
                    help="also check every case bit for bit against ggml's C code, e.g. "
                         "/work/peers/llama.cpp/build/bin/libggml-base.so")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(OUT, exist_ok=True)
    for fn in os.listdir(OUT):
        if fn.endswith(".bin") or fn == "manifest.json":
            os.remove(os.path.join(OUT, fn))
    cases = []

    # ---- quantization ----
    x = quantize_input()
    write(os.path.join(OUT, "quantize_input.f32.bin"), x)
    for name in QUANTIZE_TYPES:
        qt = T[name]
        bs, ts = GGML_QUANT_SIZES[qt]
        with np.errstate(over="raise", invalid="raise"):
            q = gguf.quants.quantize(x, qt)
        assert q.dtype == np.uint8 and q.shape == (QUANT_ROWS, QUANT_ROW_LEN // bs * ts), q.shape
        rt = gguf.quants.dequantize(q, qt)
        assert rt.dtype == np.float32 and rt.shape == x.shape
        # Sanity: the round trip is close where d is representable.
        lo = name.lower()
        write(os.path.join(OUT, f"quantize_{lo}.blocks.bin"), q)
        write(os.path.join(OUT, f"quantize_{lo}.roundtrip.f32.bin"), rt)
        cases.append(dict(
            name=f"quantize_{lo}", kind="quantize", ggml_type=name, ggml_type_id=int(qt),
            shape=[QUANT_ROWS, QUANT_ROW_LEN], block_size=bs, type_size=ts,
            input="quantize_input.f32.bin", input_dtype="f32",
            expected=f"quantize_{lo}.blocks.bin", expected_dtype="blocks",
            roundtrip=f"quantize_{lo}.roundtrip.f32.bin",
            note=(f"gguf.quants.quantize(x, {name}) bytes (rows x row_len/{bs} blocks of {ts} B); "
                  "roundtrip = gguf.quants.dequantize of them.  Input rows: 0 N(0,1), 1 N(0,0.02^2), "
                  "2 per-block scales 1e-4..3e4, 3 edge blocks (zero, negative max, +/- ties both "
                  "orders, constants, single nonzero, alternating), 4 exact .5 rounding boundaries "
                  "for Q8_0/Q4_0 and values 2^-20 / 2^-18 either side, 5 tiny values 1e-30..1e-4, "
                  "6 large values up to 3e4, 7 uniform(-1,1) with +/-0.0."),
        ))

    # ---- dequantization ----
    for i, name in enumerate(DEQUANT_TYPES):
        qt = T[name]
        bs, ts = GGML_QUANT_SIZES[qt]
        rng = np.random.default_rng(15100 + i)
        n_blocks = DEQ_ROWS * DEQ_ROW_LEN // bs
        blocks = random_blocks(name, n_blocks, rng)
        data = blocks.reshape(DEQ_ROWS, DEQ_ROW_LEN // bs * ts)
        y = gguf.quants.dequantize(data, qt)
        assert y.dtype == np.float32 and y.shape == (DEQ_ROWS, DEQ_ROW_LEN), y.shape
        assert np.isfinite(y).all(), name
        lo = name.lower()
        write(os.path.join(OUT, f"dequant_{lo}.blocks.bin"), data)
        write(os.path.join(OUT, f"dequant_{lo}.f32.bin"), y)
        cases.append(dict(
            name=f"dequant_{lo}", kind="dequantize", ggml_type=name, ggml_type_id=int(qt),
            shape=[DEQ_ROWS, DEQ_ROW_LEN], block_size=bs, type_size=ts,
            input=f"dequant_{lo}.blocks.bin", input_dtype="blocks",
            expected=f"dequant_{lo}.f32.bin", expected_dtype="f32",
            note=("random bytes with the f16 fields set to finite values; block 1 d=+0.0, 2 d=-0.0, "
                  "3 negative d, 4 f16-subnormal d (2^-20), 5 d=65504/2^20"
                  + ("; block 6 second field (m/dmin) 0.0, 7 negative" if name not in ("Q8_0", "Q4_0", "Q5_0", "Q6_K") else "")
                  + "; block 8 all other bytes 0x00, block 9 all 0xFF"
                  + (" (f16 fields: d, m at bytes 0, 2)" if name in ("Q4_1", "Q5_1") else "")
                  + (" (f16 fields: d, dmin at bytes 0, 2)" if name in ("Q4_K", "Q5_K") else "")
                  + (" (f16 d at byte 208)" if name == "Q6_K" else "")),
        ))

    for c in cases:
        for key in ("input", "expected", "roundtrip"):
            if key in c:
                c[key + "_sha256"] = sha256(os.path.join(OUT, c[key]))
    manifest = dict(
        generator="tools/make_quant_fixtures.py",
        gguf_version=getattr(gguf, "__version__", None) or _dist_version("gguf"),
        numpy_version=np.__version__,
        byte_order="little",
        layout="row-major; block files hold rows * (row_len / block_size) blocks of type_size bytes",
        cases=cases,
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    for c in cases:
        print(f"{c['name']:22s} {c['ggml_type']:5s} shape={c['shape']} "
              f"{os.path.getsize(os.path.join(OUT, c['input']))} B in, "
              f"{os.path.getsize(os.path.join(OUT, c['expected']))} B expected")
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")
    if args.check_ggml:
        check_against_ggml(args.check_ggml, cases)
    return 0


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
