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
    qwen3.jinja     Qwen3 (Qwen3-0.6B ... Qwen3-32B, current revision: ChatML,
                    no default system prompt, <think> handling of assistant
                    turns, reasoning_content, tools, enable_thinking)
    gemma3.jinja    gemma-3-*-it (bos_token, <start_of_turn>, system folded into
                    the first user turn, "model" role, alternation enforced
                    with raise_exception; the template ends with a newline)
    phi3.5.jinja    Phi-3.5-mini-instruct (<|system|> <|user|> <|assistant|>
                    <|end|>; eos_token when no generation prompt)

cases.json is a list of objects
    name                   short id of the case
    template               file stem of the template ("qwen2.5", ...)
    bos_token, eos_token   the model's real special-token strings (null = absent)
    add_generation_prompt  bool
    template_kwargs        optional object: extra variables given to the template,
                           passed as apply_chat_template(..., **template_kwargs) the
                           way HF callers pass them (e.g. {"enable_thinking": false}
                           for Qwen3); absent when there are none (so the older
                           cases are unchanged)
    messages               [{"role", "content"}, ...] (plain strings only)
    rendered               exactly what transformers'
                           PreTrainedTokenizerFast.apply_chat_template(messages,
                           tokenize=False, add_generation_prompt=...,
                           **template_kwargs) returns for a tokenizer built from
                           tests/fixtures/tokenizer.json with that chat_template,
                           bos_token and eos_token
    notes                  what else the template sees / which branch it takes

What transformers (5.x) gives the template (the Rust side must match it):
a jinja2 ImmutableSandboxedEnvironment with trim_blocks=True,
lstrip_blocks=True and the loopcontrols extension; variables messages,
tools=None, documents=None, add_generation_prompt, the case's template_kwargs
(each one a top-level variable; one not given is undefined), and the tokenizer's special
tokens that are set (here bos_token and/or eos_token; an absent one is simply
undefined, not an empty string); globals raise_exception(msg),
strftime_now(fmt), namespace(...), dict(...); the tojson filter replaced by
json.dumps(x, ensure_ascii=False, indent=None, separators=None,
sort_keys=False).  Every case is also rendered with a plain jinja2
Environment built that way (no transformers) and must be identical.

Every template gets the cases in CASES; TEMPLATE_CASES adds cases for one
template (Qwen3's thinking switch and <think> history, Phi-3.5's empty system
message).
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
    "qwen3": (
        None, "<|im_end|>",
        "No tools -> '<|im_start|>system' only when messages[0] is a system message (no default system "
        "prompt). last_query_index is the last user message whose content is not wrapped in "
        "<tool_response>...</tool_response>; an assistant turn after it is written as "
        "'<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content when it is the last "
        "message (even with empty reasoning) or has reasoning, earlier assistant turns lose their "
        "<think>...</think> part (reasoning = text before '</think>' after '<think>', content = text after "
        "'</think>' with leading newlines stripped). enable_thinking is read only by the generation prompt: "
        "defined and false -> '<think>\\n\\n</think>\\n\\n' after '<|im_start|>assistant\\n'. "
        "bos_token is not set (null) and eos_token is not used.",
    ),
    "gemma3": (
        "<bos>", "<eos>",
        "bos_token is written first; a system message is not a turn of its own: its content + '\\n\\n' "
        "prefixes the first user turn; after it roles must alternate user/assistant (raise_exception "
        "otherwise); 'assistant' is written as 'model'; content is trimmed. The template text ends with a "
        "newline after the last '{%- endif -%}', which renders nothing.",
    ),
    "phi3.5": (
        "<s>", "<|endoftext|>",
        "A system message is written only when its content is non-empty; bos_token is not used; "
        "eos_token is appended when add_generation_prompt is false.",
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


# template -> extra cases: (name, messages, add_generation_prompt, template_kwargs)
THINK_HISTORY = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "<think>\nSimple addition.\n</think>\n\n2 + 2 = 4."},
    {"role": "user", "content": "And times 3?"},
]
TEMPLATE_CASES = {
    "qwen3": [
        ("thinking_disabled_gen", [SYSTEM, USER], True, {"enable_thinking": False}),
        ("thinking_enabled_gen", [SYSTEM, USER], True, {"enable_thinking": True}),
        ("thinking_disabled_no_gen", [SYSTEM, USER], False, {"enable_thinking": False}),
        ("think_in_history_gen", THINK_HISTORY, True, {}),
        ("think_in_history_thinking_disabled_gen", THINK_HISTORY, True, {"enable_thinking": False}),
        ("think_in_last_assistant_no_gen", [
            SYSTEM,
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "<think>\n\nThe user wants one word.\n\n</think>\n\nBlue."},
        ], False, {}),
        ("think_then_tool_response_gen", [
            {"role": "user", "content": "Look it up."},
            {"role": "assistant", "content": "<think>I need the tool.</think>Calling it."},
            {"role": "user", "content": "<tool_response>\n42\n</tool_response>"},
        ], True, {}),
    ],
    "phi3.5": [
        ("empty_system_gen", [{"role": "system", "content": ""}, USER], True, {}),
    ],
}


def read_template(name):
    with open(os.path.join(CHAT, name + ".jinja"), encoding="utf-8", newline="") as f:
        return f.read()


def hf_render(template, bos, eos, messages, add_generation_prompt, template_kwargs):
    tok = PreTrainedTokenizerFast(
        tokenizer_file=TOKENIZER, bos_token=bos, eos_token=eos, chat_template=template,
    )
    expect = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
    assert tok.special_tokens_map == expect, tok.special_tokens_map
    return tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **template_kwargs)


def plain_render(template, bos, eos, messages, add_generation_prompt, template_kwargs):
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
        messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt,
        **template_kwargs, **specials)


def main():
    hf_logging.set_verbosity_error()
    out = []
    for name, (bos, eos, note) in TEMPLATES.items():
        template = read_template(name)
        cases = [(n, m, agp, {}) for n, m, agp in CASES] + TEMPLATE_CASES.get(name, [])
        for case_name, messages, agp, kwargs in cases:
            rendered = hf_render(template, bos, eos, messages, agp, kwargs)
            plain = plain_render(template, bos, eos, messages, agp, kwargs)
            assert rendered == plain, (name, case_name, rendered, plain)
            case = {
                "name": f"{name}/{case_name}",
                "template": name,
                "bos_token": bos,
                "eos_token": eos,
                "add_generation_prompt": agp,
            }
            if kwargs:
                case["template_kwargs"] = kwargs
            case.update({
                "messages": messages,
                "rendered": rendered,
                "notes": note + " " + HF_DEFAULTS,
            })
            out.append(case)
        print(f"{name:9s} {len(template.encode('utf-8')):5d} bytes, {len(cases)} cases")
    path = os.path.join(CHAT, "cases.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(out)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
