#!/usr/bin/env python3
"""Load test of `wgpt serve` (or any OpenAI-compatible server) on loopback, standard library only.

N client threads send a fixed number of streaming `/v1/completions` requests between them, each
as soon as its previous one ended, and report requests/s, time to first token (TTFT), per-request
decode tokens/s and aggregate tokens/s, with p50/p99:

    wgpt serve --port 8080 --max-batch 8 &
    python3 tools/load_test.py --url http://127.0.0.1:8080 --clients 8 --requests 64
"""

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def percentile(values, p):
    """The p-th percentile (nearest rank) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def one_request(host, port, body, timeout):
    """Sends one streaming completion; returns (ttft_s, total_s, completion_tokens)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft = None
    tokens = 0
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(chunk["error"]["message"])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        elif ttft is None and chunk["choices"] and chunk["choices"][0]["text"]:
            ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    conn.close()
    return (ttft if ttft is not None else total), total, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=64, help="requests in all")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    lock = threading.Lock()
    next_index = [0]
    results, errors = [], []

    def client():
        while True:
            with lock:
                i = next_index[0]
                if i >= a.requests:
                    return
                next_index[0] += 1
            body = {"prompt": a.prompt, "max_tokens": a.max_tokens, "temperature": a.temperature,
                    "seed": i, "stream": True, "stream_options": {"include_usage": True}}
            try:
                r = one_request(host, port, body, a.timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - reported, counted
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if not results:
        raise SystemExit(f"every request failed: {errors[:3]}")
    ttft = [r[0] for r in results]
    # Decode speed of one request: tokens after the first over the time after the first.
    rate = [(r[2] - 1) / (r[1] - r[0]) for r in results if r[2] > 1 and r[1] > r[0]]
    tokens = sum(r[2] for r in results)
    out = {
        "clients": a.clients, "requests": len(results), "errors": len(errors),
        "max_tokens": a.max_tokens, "wall_s": wall,
        "requests_per_s": len(results) / wall,
        "aggregate_tokens_per_s": tokens / wall,
        "ttft_ms_p50": 1e3 * percentile(ttft, 50), "ttft_ms_p99": 1e3 * percentile(ttft, 99),
        "tokens_per_s_p50": percentile(rate, 50) if rate else 0.0,
        "tokens_per_s_p99": percentile(rate, 1) if rate else 0.0,  # the slowest 1%
    }
    if a.json:
        print(json.dumps(out))
        return
    print("| clients | requests | errors | req/s | TTFT p50 | TTFT p99 | tok/s per request p50 | p99 (slowest) | aggregate tok/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.clients} | {len(results)} | {len(errors)} | {out['requests_per_s']:.2f} "
          f"| {out['ttft_ms_p50']:.0f} ms | {out['ttft_ms_p99']:.0f} ms "
          f"| {out['tokens_per_s_p50']:.1f} | {out['tokens_per_s_p99']:.1f} "
          f"| {out['aggregate_tokens_per_s']:.1f} |")


if __name__ == "__main__":
    main()
