#!/usr/bin/env python3
"""Latency figures of `wgpt serve` on loopback (standard library only): the three rows of
docs/benchmarks.md's serving section.

1. Prefix cache: time to first token of a request whose ~N-token prompt shares all but its
   last words with an earlier request's, against the first (cold) request.
2. Chunked prefill: the longest gap between two chunks of a running stream while a request
   with a long prompt joins, against that prompt's own time to first token.
3. Batching: 8 requests at once against the same 8 one after another (greedy, equal work).

    wgpt serve --model /tmp/gpt2-random --port 8080 &
    python3 tools/serve_latency.py --url http://127.0.0.1:8080 --prefix-words 470
"""

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def post(host, port, body, on_chunk=None):
    """One completion; streams when `on_chunk` is given (called with the time of each text
    chunk). Returns (seconds to the first text, total seconds, the answer or None)."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    if on_chunk is None:
        answer = json.loads(resp.read())
        return None, time.perf_counter() - t0, answer
    first = None
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if "error" in chunk:
            raise RuntimeError(chunk["error"]["message"])
        if chunk["choices"] and chunk["choices"][0]["text"]:
            now = time.perf_counter()
            first = first if first is not None else now - t0
            on_chunk(now)
    conn.close()
    return first, time.perf_counter() - t0, None


def ttft(host, port, prompt):
    """Time to the first token of a streamed greedy request with one token."""
    first, _, _ = post(host, port, {"prompt": prompt, "max_tokens": 1, "temperature": 0,
                                    "stream": True}, on_chunk=lambda t: None)
    return first


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--prefix-words", type=int, default=470,
                    help="words of the shared prefix (GPT-2's tokenizer: ~1.35 tokens each)")
    ap.add_argument("--stream-tokens", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batch-tokens", type=int, default=48)
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: prefix,chunks,batch")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    skip = set(filter(None, a.skip.split(",")))
    words = ("But soft what light through yonder window breaks It is the east and Juliet "
             "is the sun Arise fair sun and kill the envious moon ").split()
    # A first word of its own, so that no earlier run's prompt is in the prefix cache.
    doc = f"Run{time.time_ns() % 10**9} " + " ".join(words[i % len(words)] for i in range(a.prefix_words))
    out = {}
    if "prefix" not in skip:
        ttft(host, port, "warm up")
        cold = ttft(host, port, doc + " Who speaks first?")
        warm = ttft(host, port, doc + " Who speaks last?")
        out["prefix"] = {"cold_ttft_s": cold, "warm_ttft_s": warm, "speedup": cold / warm}
        print(f"prefix cache: first token {cold * 1e3:.0f} ms cold, {warm * 1e3:.0f} ms with "
              f"the shared prefix cached ({cold / warm:.1f}x)")
    if "chunks" not in skip:
        times = []
        body = {"prompt": "ROMEO:", "max_tokens": a.stream_tokens, "temperature": 0,
                "stream": True}
        runner = threading.Thread(target=post, args=(host, port, body, times.append))
        runner.start()
        while len(times) < 10:
            time.sleep(0.01)
        joined = time.perf_counter()
        # Another long prompt (not cached: its first words differ).
        long_ttft = ttft(host, port, "Enter " + " ".join(reversed(doc.split())))
        runner.join()
        gaps = [b - a_ for a_, b in zip(times, times[1:])]
        during = [b - a_ for a_, b in zip(times, times[1:]) if b >= joined and a_ <= joined + long_ttft]
        before = sorted(g for a_, g in zip(times, gaps) if a_ < joined)
        out["chunks"] = {"long_prompt_ttft_s": long_ttft,
                         "worst_gap_while_joining_s": max(during) if during else None,
                         "median_gap_before_s": before[len(before) // 2] if before else None}
        print(f"chunked prefill: the joining prompt's first token after {long_ttft * 1e3:.0f} ms; "
              f"the running stream's worst gap meanwhile {max(during) * 1e3:.0f} ms "
              f"(median gap before it joined {before[len(before) // 2] * 1e3:.0f} ms)")
    if "batch" not in skip:
        body = {"prompt": "ROMEO:", "max_tokens": a.batch_tokens, "temperature": 0,
                "logit_bias": {"0": -100}}
        t0 = time.perf_counter()
        for _ in range(a.batch):
            post(host, port, body)
        serial = time.perf_counter() - t0
        threads = [threading.Thread(target=post, args=(host, port, body)) for _ in range(a.batch)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.perf_counter() - t0
        out["batch"] = {"serial_s": serial, "concurrent_s": together, "speedup": serial / together}
        print(f"batching: {a.batch} requests of {a.batch_tokens} tokens in a row {serial:.2f} s, "
              f"at once {together:.2f} s ({serial / together:.1f}x)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
