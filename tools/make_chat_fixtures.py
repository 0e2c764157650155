#!/usr/bin/env python3
"""Generate tests/fixtures/chat/cases.json from the chat templates next to it.

Run from the repository root (needs the packages in tools/requirements.txt):

    python tools/make_chat_fixtures.py

It reads tests/fixtures/chat/<name>.jinja for the templates listed in
TEMPLATES and tests/fixtures/tokenizer.json, and writes only
tests/fixtures/chat/cases.json (deterministic; no network, no model files).

The .jinja files are real chat templates, byte for byte (UTF-8, the template
text exactly as the model's tokenizer_config.json "chat_template" holds it
after JSON decoding; no newline added at the end):

    qwen2.5.jinja   Qwen2.5-*-Instruct (ChatML, default system prompt
                    "You are Qwen, created by Alibaba Cloud. ...", tool branch)
    llama3.jinja    Meta-Llama-3-8B-Instruct (current revision, with the
                    add_generation_prompt guard)
    llama3.1.jinja  Llama 3.1 / 3.3 Instruct (date_string, tools,
                    builtin_tools, tools_in_user_message, ipython role)
    smollm2.jinja   SmolLM2-*-Instruct (ChatML, default system prompt
                    "You are a helpful AI assistant named SmolLM, ...")

cases.json is a list of objects
    name                   short id of the case
    template               file stem of the template ("qwen2.5", ...)
    bos_token, eos_token   the model's real special-token strings (null = absent)
    add_generation_prompt  bool
    messages               [{"role", "content"}, ...]
    rendered               exactly what transformers'
                           PreTrainedTokenizerFast.apply_chat_template(messages,
                           tokenize=False, add_generation_prompt=...) returns for a
                           tokenizer built from tests/fixtures/tokenizer.json with
                           that chat_template, bos_token and eos_token
    notes                  what else the template sees / which branch it takes

What transformers (5.x) gives the template (the Rust side must match it):
a jinja2 ImmutableSandboxedEnvironment with trim_blocks=True,
lstrip_blocks=True and the loopcontrols extension; variables messages,
tools=None, documents=None, add_generation_prompt, and the tokenizer's special
tokens that are set (here bos_token and/or eos_token; an absent one is simply
undefined, not an empty string); globals raise_exception(msg),
strftime_now(fmt), namespace(...), dict(...); the tojson filter replaced by
json.dumps(x, ensure_ascii=False, indent=None, separators=None,
sort_keys=False).  Every case is also rendered with a plain jinja2
Environment built that way (no transformers) and must be identical.
"""

import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(REPO_ROOT, "tests", "fixtures")
CHAT = os.path.join(FIX, "chat")
TOKENIZER = os.path.join(FIX, "tokenizer.json")

HF_DEFAULTS = (
    "transformers passes tools=None and documents=None (no tools given) and the set special tokens "
    "(bos_token/eos_token here); globals raise_exception, strftime_now, namespace, dict; "
    "trim_blocks + lstrip_blocks + loopcontrols."
)

# name -> (bos_token, eos_token, template-specific note)
TEMPLATES = {
    "qwen2.5": (
        None, "<|im_end|>",
        "No tools -> the non-tool branch: messages[0] system, else the default system prompt "
        "'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'. bos_token is not set "
        "(Qwen2.5 has bos_token null) and not used; eos_token is not used either.",
    ),
    "llama3": (
        "<|begin_of_text|>", "<|eot_id|>",
        "bos_token is written by the template (before the first message); content is trimmed "
        "(| trim binds to message['content'] only).",
    ),
    "llama3.1": (
        "<|begin_of_text|>", "<|eot_id|>",
        "date_string is not passed by transformers, so the template's default '26 Jul 2024' is used "
        "(this template does not call strftime_now); custom_tools, builtin_tools and "
        "tools_in_user_message are undefined (tools_in_user_message defaults to true, tools=None -> no "
        "tool text); the system block is always emitted (empty system message if none), system "
        "content and message contents are trimmed.",
    ),
    "smollm2": (
        "<|im_start|>", "<|im_end|>",
        "Default system prompt 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' "
        "when messages[0] is not a system message; bos/eos are not used by the template.",
    ),
}

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
USER = {"role": "user", "content": "Hello, who are you?"}
CASES = [
    ("user", [USER], False),
    ("user_gen", [USER], True),
    ("system_user_gen", [SYSTEM, USER], True),
    ("multi_turn_gen", [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And times 3?"},
    ], True),
    ("system_multi_turn_no_gen", [
        SYSTEM,
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ], False),
    ("non_ascii_gen", [
        {"role": "system", "content": "Réponds brièvement. 日本語も可。"},
        {"role": "user", "content": "Grüß dich — ¿qué tal? 你好 👋"},
    ], True),
    ("whitespace_gen", [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": "\n  padded answer  "},
        {"role": "user", "content": "line one\n\nline two"},
    ], True),
]


def read_template(name):
    with open(os.path.join(CHAT, name + ".jinja"), encoding="utf-8", newline="") as f:
        return f.read()


def hf_render(template, bos, eos, messages, add_generation_prompt):
    tok = PreTrainedTokenizerFast(
        tokenizer_file=TOKENIZER, bos_token=bos, eos_token=eos, chat_template=template,
    )
    expect = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
    assert tok.special_tokens_map == expect, tok.special_tokens_map
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def plain_render(template, bos, eos, messages, add_generation_prompt):
    """The same rendering with jinja2 directly (the environment described above)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals.update(raise_exception=raise_exception, namespace=jinja2.utils.Namespace, dict=dict,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt))
    specials = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
    return env.from_string(template).render(
        messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **specials)


def main():
    hf_logging.set_verbosity_error()
    out = []
    for name, (bos, eos, note) in TEMPLATES.items():
        template = read_template(name)
        for case_name, messages, agp in CASES:
            rendered = hf_render(template, bos, eos, messages, agp)
            plain = plain_render(template, bos, eos, messages, agp)
            assert rendered == plain, (name, case_name, rendered, plain)
            out.append({
                "name": f"{name}/{case_name}",
                "template": name,
                "bos_token": bos,
                "eos_token": eos,
                "add_generation_prompt": agp,
                "messages": messages,
                "rendered": rendered,
                "notes": note + " " + HF_DEFAULTS,
            })
        print(f"{name:9s} {len(template.encode('utf-8')):5d} bytes, {len(CASES)} cases")
    path = os.path.join(CHAT, "cases.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(out)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
