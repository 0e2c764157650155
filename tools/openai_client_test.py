#!/usr/bin/env python3
"""`wgpt serve` driven by the official `openai` Python client (pip install openai): streaming,
`n`, log-probabilities, structured output (a strict JSON schema) and the errors the client
raises, on the built-in model (completions) and a fixture with a chat template (chat). Starts
and stops the servers itself; exits non-zero on the first failed check.

    cargo build --release && python3 tools/openai_client_test.py [--wgpt target/release/wgpt]

Not part of `cargo test` (which needs no Python): run it by hand after changing the server.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parent.parent


def start(wgpt, *args):
    """A `wgpt serve --port 0` process and a client for it."""
    p = subprocess.Popen([wgpt, "serve", "--port", "0", "--cpu", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if "listening on http://" not in line:
        p.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    url = line.split("listening on ")[1].split(" ")[0]
    return p, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def completions(client):
    model = client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=0,
                                  logprobs=3, n=2)
    check(len(r.choices) == 2 and r.choices[0].text == r.choices[1].text,
          "completions: n=2 greedy choices are equal")
    lp = r.choices[0].logprobs
    check("".join(lp.tokens) == r.choices[0].text and len(lp.token_logprobs) == len(lp.tokens),
          "completions: logprobs tokens spell the text")
    check(all(abs(max(t.values()) - l) < 1e-6 for t, l in zip(lp.top_logprobs, lp.token_logprobs)),
          "completions: each greedy token is its top_logprobs' best")
    check(r.usage.prompt_tokens_details is None or r.usage.prompt_tokens_details.cached_tokens >= 0,
          "completions: usage parses")
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="ROMEO:", max_tokens=8, temperature=0, stream=True))
    check(text == r.choices[0].text, "completions: streamed text equals the whole answer")
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
              "properties": {"name": {"type": "string", "maxLength": 8},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120}}}
    r = client.completions.create(
        model=model, prompt="JULIET:", max_tokens=60, temperature=1, seed=3, n=4,
        extra_body={"response_format": {"type": "json_schema",
                                         "json_schema": {"name": "p", "schema": schema, "strict": True}}})
    for c in r.choices:
        o = json.loads(c.text)
        check(set(o) == {"name", "age"} and isinstance(o["age"], int) and 0 <= o["age"] <= 120
              and len(o["name"]) <= 8, f"structured output: {c.text} validates")
    try:
        client.completions.create(model=model, prompt="A", max_tokens=4,
                                  extra_body={"tools": [{"type": "function"}]})
        check(False, "tools refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "tools", "tools: a 400 naming the field")


def chat(client):
    model = client.models.list().data[0].id
    msgs = [{"role": "user", "content": "Hello"}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in content),
          "chat: logprobs content per token with 2 alternatives")
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=msgs, max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}) if c.choices]
    check("".join(parts) == r.choices[0].message.content, "chat: streamed text equals the whole answer")
    schema = {"type": "object", "additionalProperties": False, "required": ["ok"],
              "properties": {"ok": {"type": "boolean"}}}
    r = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=20, temperature=1, seed=1, n=3,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}})
    for c in r.choices:
        check(isinstance(json.loads(c.message.content)["ok"], bool),
              f"chat structured output: {c.message.content} validates")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wgpt", default=str(REPO / "target/release/wgpt"))
    a = ap.parse_args()
    print(f"openai {openai.__version__}")
    for args, run in [((), completions), (("-m", str(REPO / "tests/fixtures/tiny-llama32-bf16")), chat)]:
        p, client = start(a.wgpt, *args)
        try:
            run(client)
        finally:
            p.kill()
            p.wait()
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
