#!/usr/bin/env python3
"""Load test of `wgpt serve` (or any OpenAI-compatible server) on loopback, standard library only.

Mixed mode (the default): for --duration seconds, --clients threads each send one request after
another, picking at random (seeded) among: a short prompt, streamed or not; a long prompt,
streamed; a stream closed after a few chunks; a bad request (which must get HTTP 400 with a JSON
`error`); `n: 2`; `logprobs: 2`; prompts sharing a long prefix (the prefix cache); chat with
--chat. Every valid request must succeed; the script exits 1 when more than --max-failures did
not. With --wgpt it starts the server itself (`PATH serve --port 0 --cpu ARGS`), samples its
RSS, and stops it at the end; then it checks /health and prints the main /metrics lines:

    python3 tools/load_test.py --wgpt target/release/wgpt --duration 180 --clients 8
    python3 tools/load_test.py --url http://127.0.0.1:8080 --duration 60 --json

Simple mode (--requests N): N streaming completions of --prompt between the clients, reporting
requests/s, TTFT, per-request and aggregate tokens/s with p50/p99:

    python3 tools/load_test.py --url http://127.0.0.1:8080 --clients 8 --requests 64
"""

import argparse
import http.client
import json
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

# Text the built-in model (trained on TinyShakespeare) knows: prompts are cut from it.
TEXT = """GREMIO:
Good morrow, neighbour Baptista.

BAPTISTA:
Good morrow, neighbour Gremio.
God save you, gentlemen!

PETRUCHIO:
And you, good sir! Pray, have you not a daughter
Call'd Katharina, fair and virtuous?

BAPTISTA:
I have a daughter, sir, called Katharina.

GREMIO:
You are too blunt: go to it orderly.

PETRUCHIO:
You wrong me, Signior Gremio: give me leave.
I am a gentleman of Verona, sir,
That, hearing of her beauty and her wit,
Her affability and bashful modesty,
Her wondrous qualities and mild behavior,
Am bold to show myself a forward guest
Within your house, to make mine eye the witness
Of that report which I so oft have heard.
And, for an entrance to my entertainment,
I do present you with a man of mine,
Cunning in music and the mathematics,
To instruct her fully in those sciences,
Whereof I know she is not ignorant:
Accept of him, or else you do me wrong:
His name is Licio, born in Mantua.

BAPTISTA:
You're welcome, sir; and he, for your good sake.
But for my daughter Katharina, this I know,
She is not for your turn, the more my grief.
"""
SHORT = ["ROMEO:", "JULIET:\nO", "First Citizen:\nWe", "KING RICHARD III:\nNow is", "MENENIUS:\n",
         "To be, or not", "Good morrow,", "BAPTISTA:\nWhat"]
SUFFIXES = ["\n\nKATHARINA:\n", "\n\nTRANIO:\nSir,", "\n\nLUCENTIO:\nO", "\n\nBIANCA:\n", "\n\nGRUMIO:\nNay"]
BAD = {  # name: the body
    "invalid_json": b'{"prompt": "ROMEO:", "max_tokens": 8',
    "temperature_5": json.dumps({"prompt": "ROMEO:", "max_tokens": 8, "temperature": 5}).encode(),
    "max_tokens_0": json.dumps({"prompt": "ROMEO:", "max_tokens": 0}).encode(),
}


def percentile(values, p):
    """The p-th percentile (nearest rank) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Failure(Exception):
    """A valid request that did not succeed: `kind` (what went wrong) and a detail."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def post(host, port, path, body, timeout):
    """Opens a POST; returns (connection, response, start time)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, body=body if isinstance(body, bytes) else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        sock = conn.sock  # getresponse() forgets it when the answer closes the connection
        resp = conn.getresponse()
        resp.sock = sock
        return conn, resp, t0
    except socket.timeout as e:
        conn.close()
        raise Failure("timeout", f"no response head in {timeout} s") from e
    except OSError as e:
        conn.close()
        raise Failure("connection", repr(e)) from e


def check_usage(usage, n, max_tokens):
    if not usage or not 1 <= usage.get("completion_tokens", 0) <= n * max_tokens:
        raise Failure("usage", f"usage {usage} for n={n}, max_tokens={max_tokens}")


def complete(host, port, body, timeout, path="/v1/completions"):
    """A non-streaming request; returns a result dict (tokens, cached)."""
    conn, resp, t0 = post(host, port, path, body, timeout)
    try:
        raw = resp.read()
    except (socket.timeout, OSError) as e:
        raise Failure("timeout" if isinstance(e, socket.timeout) else "connection", repr(e)) from e
    finally:
        conn.close()
    if resp.status != 200:
        raise Failure(f"http_{resp.status}", raw[:200])
    v = json.loads(raw)
    n = body.get("n", 1)
    if len(v.get("choices", [])) != n or any(c.get("finish_reason") not in ("stop", "length")
                                              for c in v["choices"]):
        raise Failure("choices", f"{len(v.get('choices', []))} choices for n={n}: {raw[:200]!r}")
    usage = v.get("usage")
    check_usage(usage, n, body["max_tokens"])
    if body.get("logprobs") is not None:
        for c in v["choices"]:
            lp = c.get("logprobs") or {}
            tops = lp.get("top_logprobs") or []
            if len(lp.get("tokens") or []) == 0 or any(not 1 <= len(t) <= body["logprobs"] for t in tops):
                raise Failure("logprobs", f"logprobs {json.dumps(lp)[:200]}")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return {"tokens": usage["completion_tokens"], "prompt_tokens": usage["prompt_tokens"],
            "cached": cached, "total": time.perf_counter() - t0}


def stream(host, port, body, timeout, path="/v1/completions", cancel_after=None):
    """A streaming request; returns a result dict (ttft, tokens, ...). With cancel_after, closes
    the socket after that many chunks with text (`cancelled` in the result)."""
    conn, resp, t0 = post(host, port, path, body, timeout)
    ttft, usage, texts, finished, done = None, None, 0, set(), False
    try:
        if resp.status != 200:
            raise Failure(f"http_{resp.status}", resp.read()[:200])
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            if line[6:] == b"[DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise Failure("error_chunk", json.dumps(chunk["error"])[:200])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices") or []:
                text = c.get("text") if "text" in c else (c.get("delta") or {}).get("content")
                if text:
                    texts += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                if c.get("finish_reason"):
                    finished.add(c["index"])
            if cancel_after is not None and texts >= cancel_after:
                resp.sock.shutdown(socket.SHUT_RDWR)  # the server sees the client go away
                return {"cancelled": True, "ttft": ttft, "tokens": 0, "total": time.perf_counter() - t0}
    except socket.timeout as e:
        raise Failure("timeout", f"stalled after {texts} text chunks ({timeout} s)") from e
    except OSError as e:
        raise Failure("connection", f"{e!r} after {texts} text chunks") from e
    finally:
        conn.close()
    if not done:
        raise Failure("no_done", f"the stream ended without [DONE] after {texts} text chunks")
    n = body.get("n", 1)
    if finished != set(range(n)):
        raise Failure("finish_reason", f"choices finished: {sorted(finished)} for n={n}")
    if body.get("stream_options", {}).get("include_usage"):
        check_usage(usage, n, body["max_tokens"])
    usage = usage or {}
    return {"cancelled": False, "ttft": ttft, "tokens": usage.get("completion_tokens", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            "total": time.perf_counter() - t0}


def bad_request(host, port, name, timeout):
    """Sends the bad request `name`; raises Failure unless it got 400 with a JSON error."""
    conn, resp, _ = post(host, port, "/v1/completions", BAD[name], timeout)
    try:
        raw = resp.read()
    finally:
        conn.close()
    if resp.status != 400:
        raise Failure("bad_not_400", f"{name}: HTTP {resp.status} {raw[:200]!r}")
    try:
        err = json.loads(raw)["error"]
        assert isinstance(err, dict) and err.get("message")
    except (ValueError, KeyError, AssertionError) as e:
        raise Failure("bad_no_error_object", f"{name}: {raw[:200]!r}") from e
    return {"tokens": 0}


def cut(rng, chars):
    """About `chars` characters of TEXT (wrapping round), from a random line."""
    lines = TEXT.splitlines(keepends=True)
    i, out = rng.randrange(len(lines)), ""
    while len(out) < chars:
        out += lines[i % len(lines)]
        i += 1
    return out[:chars]


class Server:
    """`wgpt serve --port 0 --cpu ...`, started by the script: its port, its RSS, its log."""

    def __init__(self, binary, args, log_path):
        cmd = [binary, "serve", "--port", "0", "--cpu", *shlex.split(args)]
        self.cmd = " ".join(shlex.quote(c) for c in cmd)
        self.log = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        first = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(300)
        line = first[0] if first else ""
        if "listening on http://" not in line:
            self.stop()
            raise SystemExit(f"the server did not start ({self.cmd}): {line!r}; see {log_path}")
        hostport = line.split("http://", 1)[1].split()[0]
        self.port = int(hostport.rsplit(":", 1)[1])
        self.banner = line.strip()
        threading.Thread(target=lambda: [self.log.write(l) for l in self.proc.stdout], daemon=True).start()

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.flush()


def get(host, port, path, timeout=30):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def run_mixed(a, host, port, server):
    rng0 = random.Random(a.seed)
    # How many characters of TEXT make a token, from the server's own count.
    # (three slices of 350 characters, each well within a 256-token context)
    slices = [TEXT[i:i + 350] for i in range(0, len(TEXT) - 350, (len(TEXT) - 350) // 3)][:3]
    probes = [complete(host, port, {"prompt": p, "max_tokens": 1, "temperature": 0}, a.timeout)
              for p in slices]
    chars_per_token = sum(map(len, slices)) / sum(p["prompt_tokens"] for p in probes)
    prefix = cut(random.Random(a.seed), int(a.prefix_tokens * chars_per_token))
    kinds = ["short", "short_stream", "long_stream", "cancel", "bad", "n2", "logprobs", "prefix"]
    if a.chat:
        kinds.append("chat_stream")
    lock = threading.Lock()
    results = []  # (kind, result dict)
    failures = {}  # failure kind -> [count, first detail]
    t_start = time.perf_counter()
    deadline = t_start + a.duration

    def one(rng, kind):
        mt = rng.randint(8, 48)
        body = {"prompt": rng.choice(SHORT), "max_tokens": mt, "temperature": round(rng.uniform(0, 1.2), 2),
                "seed": rng.randrange(1 << 31)}
        so = {"stream": True, "stream_options": {"include_usage": True}}
        if kind == "short":
            if rng.random() < 0.3:
                body["stop"] = ["\n\n"]
            return body, complete(host, port, body, a.timeout)
        if kind == "short_stream":
            return body, stream(host, port, {**body, **so}, a.timeout)
        if kind == "long_stream":
            body["prompt"] = cut(rng, int(a.long_tokens * chars_per_token))
            return body, stream(host, port, {**body, **so}, a.timeout)
        if kind == "cancel":
            body.update(so, max_tokens=48, prompt=cut(rng, int(a.long_tokens * chars_per_token)))
            return body, stream(host, port, body, a.timeout, cancel_after=rng.randint(1, 4))
        if kind == "bad":
            name = rng.choice(sorted(BAD))
            return {"bad": name}, bad_request(host, port, name, a.timeout)
        if kind in ("n2", "logprobs"):
            body.update({"n": 2} if kind == "n2" else {"logprobs": 2})
            if rng.random() < 0.5:
                return body, stream(host, port, {**body, **so}, a.timeout)
            return body, complete(host, port, body, a.timeout)
        if kind == "prefix":
            body["prompt"] = prefix + rng.choice(SUFFIXES)
            return body, complete(host, port, body, a.timeout)
        chat = {"messages": [{"role": "user", "content": body.pop("prompt")}], **body, **so}
        return chat, stream(host, port, chat, a.timeout, path="/v1/chat/completions")

    def client(i):
        rng = random.Random(f"{a.seed}-{i}")
        while time.perf_counter() < deadline:
            kind = rng.choice(kinds)
            body = None
            try:
                body, r = one(rng, kind)
                r["t"] = time.perf_counter() - t_start
                with lock:
                    results.append((kind, r))
            except Failure as e:
                with lock:
                    f = failures.setdefault(f"{kind}/{e.kind}", [0, None])
                    f[0] += 1
                    f[1] = f[1] or f"{e} (t={time.perf_counter() - t_start:.1f} s)"
            except Exception as e:  # noqa: BLE001 - a bug of this script or a malformed answer
                with lock:
                    f = failures.setdefault(f"{kind}/exception", [0, None])
                    f[0] += 1
                    f[1] = f[1] or repr(e)

    rss = []  # (seconds since the start, MiB)
    stop_sampling = threading.Event()

    def sampler():
        while server and not stop_sampling.is_set():
            m = server.rss_mib()
            if m is not None:
                rss.append((time.perf_counter() - t_start, m))
            stop_sampling.wait(a.rss_interval)

    sampler_thread = threading.Thread(target=sampler, daemon=True)
    sampler_thread.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    stop_sampling.set()
    sampler_thread.join()

    # After the load: every slot free again (cancelled streams included), health, metrics.
    health_status, health_body, idle = None, "", False
    for _ in range(20):
        health_status, health_body = get(host, port, "/health")
        try:
            h = json.loads(health_body)
            idle = h.get("active", 0) == 0 and h.get("queued", 0) == 0
        except ValueError:
            pass
        if idle:
            break
        time.sleep(0.5)
    if server:
        m = server.rss_mib()
        if m is not None:
            rss.append((time.perf_counter() - t_start, m))
    metrics_status, metrics = get(host, port, "/metrics")
    metric_lines = [l for l in metrics.splitlines() if l.startswith((
        "wgpt_requests_total", "wgpt_cached_prompt_tokens_total", "wgpt_time_to_first_token_seconds_count",
        "wgpt_requests_cancelled"))]

    valid = [(k, r) for k, r in results if k not in ("bad", "cancel")]
    ttft = [r["ttft"] for _, r in valid if r.get("ttft") is not None]
    per_kind = {k: sum(1 for kk, _ in results if kk == k) for k in kinds}
    prefix_r = [r for k, r in results if k == "prefix"]
    out = {
        "duration_s": a.duration, "clients": a.clients, "seed": a.seed, "wall_s": round(wall, 2),
        "valid_completed": len(valid), "requests_per_s": len(valid) / wall,
        "generated_tokens": sum(r["tokens"] for _, r in valid),
        "aggregate_tokens_per_s": sum(r["tokens"] for _, r in valid) / wall,
        "ttft_ms_p50": 1e3 * percentile(ttft, 50) if ttft else None,
        "ttft_ms_p99": 1e3 * percentile(ttft, 99) if ttft else None,
        "per_kind": per_kind,
        "cancels": sum(1 for k, r in results if k == "cancel" and r.get("cancelled")),
        "bad_requests_400": per_kind["bad"],
        "failures": {k: v[0] for k, v in sorted(failures.items())},
        "failure_examples": {k: v[1] for k, v in sorted(failures.items())},
        "long_prompt_tokens_mean": (lambda p: sum(p) / len(p) if p else None)(
            [r["prompt_tokens"] for k, r in results if k == "long_stream" and r.get("prompt_tokens")]),
        "prefix_prompt_tokens_mean": (lambda p: sum(p) / len(p) if p else None)(
            [r["prompt_tokens"] for r in prefix_r]),
        "cached_prompt_tokens": sum(r.get("cached", 0) for _, r in valid),
        "prefix_requests_with_cache_hit": sum(1 for r in prefix_r if r["cached"] > 0),
        "health_status": health_status, "health": health_body.strip(), "idle_after_load": idle,
        "metrics_status": metrics_status, "metrics": metric_lines,
    }
    if server:
        warm = [m for t, m in rss if t >= 0.2 * a.duration] or [m for _, m in rss]
        if warm:
            out.update(rss_warm_mib=warm[0], rss_end_mib=rss[-1][1], rss_max_mib=max(m for _, m in rss),
                       rss_growth_pct=100.0 * (rss[-1][1] - warm[0]) / warm[0])
    n_fail = sum(v[0] for v in failures.values())
    problems = []
    if n_fail > a.max_failures:
        problems.append(f"{n_fail} failed requests (more than --max-failures {a.max_failures})")
    if health_status != 200 or '"status":"ok"' not in health_body.replace(" ", ""):
        problems.append(f"/health: HTTP {health_status} {health_body[:200]}")
    if not idle:
        problems.append(f"slots still busy after the load: {health_body[:200]}")
    rss_warning = out.get("rss_growth_pct", 0) > 10.0
    if rss_warning and a.strict_rss:
        problems.append(f"RSS grew {out['rss_growth_pct']:.1f}% after the warm-up")
    out["problems"] = problems

    if a.json:
        print(json.dumps(out))
    else:
        f = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
        if server:
            print(f"server: {server.cmd}\n  {server.banner}\n  log: {server.log_path}")
        print(f"mixed load: {a.clients} clients, {a.duration:.0f} s (wall {wall:.1f} s), seed {a.seed}")
        print(f"valid requests completed: {len(valid)}  ({out['requests_per_s']:.2f} req/s)")
        print(f"generated tokens: {out['generated_tokens']}  ({out['aggregate_tokens_per_s']:.1f} tok/s aggregate)")
        print(f"TTFT (streams, first text chunk): p50 {f(out['ttft_ms_p50'], '.0f')} ms, "
              f"p99 {f(out['ttft_ms_p99'], '.0f')} ms over {len(ttft)}")
        print("per kind: " + ", ".join(f"{k} {v}" for k, v in per_kind.items()))
        print(f"cancels: {out['cancels']} closed mid-stream ({per_kind['cancel'] - out['cancels']} ended first); "
              f"bad requests answered 400: {out['bad_requests_400']}")
        print(f"prompt tokens: long {f(out['long_prompt_tokens_mean'], '.1f')} mean, "
              f"shared-prefix {f(out['prefix_prompt_tokens_mean'], '.1f')} mean")
        print(f"cached prompt tokens (usage): {out['cached_prompt_tokens']}; "
              f"prefix requests with a cache hit: {out['prefix_requests_with_cache_hit']}/{len(prefix_r)}")
        if "rss_warm_mib" in out:
            print(f"RSS: {out['rss_warm_mib']:.1f} MiB after warm-up, {out['rss_end_mib']:.1f} MiB at the end "
                  f"(max {out['rss_max_mib']:.1f}), growth {out['rss_growth_pct']:+.1f}%")
        if rss_warning:
            print(f"WARNING: RSS grew {out['rss_growth_pct']:.1f}% (> 10%) after the warm-up")
        print(f"failures: {n_fail}")
        for k, (n, ex) in sorted(failures.items()):
            print(f"  {k}: {n}  e.g. {ex}")
        print(f"/health: {health_status} {health_body.strip()}")
        print(f"/metrics: {metrics_status}")
        for l in metric_lines:
            print("  " + l)
        for p in problems:
            print("FAIL: " + p)
    return 1 if problems else 0


def one_request(host, port, body, timeout):
    """Simple mode: one streaming completion; returns (ttft_s, total_s, completion_tokens)."""
    r = stream(host, port, body, timeout)
    return (r["ttft"] if r["ttft"] is not None else r["total"]), r["total"], r["tokens"]


def run_simple(a, host, port):
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
        return 0
    print("| clients | requests | errors | req/s | TTFT p50 | TTFT p99 | tok/s per request p50 | p99 (slowest) | aggregate tok/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.clients} | {len(results)} | {len(errors)} | {out['requests_per_s']:.2f} "
          f"| {out['ttft_ms_p50']:.0f} ms | {out['ttft_ms_p99']:.0f} ms "
          f"| {out['tokens_per_s_p50']:.1f} | {out['tokens_per_s_p99']:.1f} "
          f"| {out['aggregate_tokens_per_s']:.1f} |")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (default: start --wgpt)")
    ap.add_argument("--wgpt", default="target/release/wgpt", help="the binary to start when no --url")
    ap.add_argument("--serve-args", default="", help="more arguments of `wgpt serve`")
    ap.add_argument("--server-log", default="/tmp/wgpt-load-server.log", help="the started server's output")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--duration", type=float, default=180.0, help="mixed mode: seconds of load")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long-tokens", type=int, default=150, help="tokens of a long prompt (about)")
    ap.add_argument("--prefix-tokens", type=int, default=120, help="tokens of the shared prefix (about)")
    ap.add_argument("--chat", action="store_true", help="also stream /v1/chat/completions")
    ap.add_argument("--max-failures", type=int, default=0, help="exit 1 above this many failures")
    ap.add_argument("--rss-interval", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--strict-rss", action="store_true", help="exit 1 when RSS grew > 10%% after warm-up")
    ap.add_argument("--requests", type=int, help="simple mode: this many requests in all")
    ap.add_argument("--max-tokens", type=int, default=64, help="simple mode")
    ap.add_argument("--prompt", default="ROMEO:", help="simple mode")
    ap.add_argument("--temperature", type=float, default=0.8, help="simple mode")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    server = None
    if a.url:
        u = urllib.parse.urlparse(a.url)
        host, port = u.hostname, u.port or 80
    else:
        server = Server(a.wgpt, a.serve_args, a.server_log)
        host, port = "127.0.0.1", server.port
    try:
        if a.requests is not None:
            return run_simple(a, host, port)
        return run_mixed(a, host, port, server)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
