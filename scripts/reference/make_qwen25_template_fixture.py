#!/usr/bin/env python3
"""The Qwen2.5-Coder chat template and its renderings, for tests that CI runs without the GGUF.

Reads `tokenizer.chat_template` from the 1.5B GGUF (`scripts/setup.sh` installs it; sha256
checked here) with gguf-py's reader, writes it to tests/fixtures/qwen2.5-coder/chat_template.jinja,
and renders a few conversations with jinja2 set up as transformers' `apply_chat_template` sets it
up (sandboxed environment, trim_blocks, lstrip_blocks, loopcontrols, its `tojson` and
`raise_exception`), into renders.json. Before writing, it checks that jinja2 renders the two
conversations of tests/fixtures/gguf-dequant/qwen2.5-coder-1.5b-greedy.json exactly as
transformers rendered them there.

Usage: python3 scripts/reference/make_qwen25_template_fixture.py [GGUF]
Needs: pip install gguf jinja2 (fixture-making only; CI needs neither).
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.sandbox
from gguf import GGUFReader

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/qwen2.5-coder"
GGUF_SHA = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
DEFAULT = Path(os.environ.get("PSY_ASSETS", Path.home() / ".cache/psy/assets")) / (
    "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_string(reader, key):
    field = reader.fields[key]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def environment():
    # As transformers' `_compile_jinja_template` (utils/chat_template_utils.py).
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


TOOL = {
    "type": "function",
    "function": {
        "name": "find_helpline",
        "description": "Find a crisis line for a country — «urgent» use only.",
        "parameters": {
            "type": "object",
            "properties": {"country": {"type": "string", "description": "ISO code, e.g. GB"}},
            "required": ["country"],
        },
    },
}


def cases():
    m = lambda role, content: {"role": role, "content": content}
    return [
        # tests/session_prompt.rs's two turns: the turn's guidance as a second system message.
        ("session turn 2", [m("system", "RUN-SYSTEM"), m("user", "first message"),
                            m("assistant", "first reply"), m("system", "GUIDANCE-2"),
                            m("user", "second message")], None, True),
        ("session turn 3", [m("system", "RUN-SYSTEM"), m("user", "first message"),
                            m("assistant", "first reply"), m("user", "second message"),
                            m("assistant", "second reply"), m("system", "GUIDANCE-3"),
                            m("user", "third message")], None, True),
        ("no system message", [m("user", "I can't sleep.\nAny ideas?")], None, True),
        ("history without a generation prompt",
         [m("system", "Be brief."), m("user", "hello  "), m("assistant", " hi there\n"),
          m("user", "ça va? 😊")], None, False),
        ("tools", [m("user", "Which number do I call in the UK?")], [TOOL], True),
        ("tools and a system message",
         [m("system", "You help people find support."), m("user", "Help")], [TOOL], True),
    ]


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    got = sha256(path)
    if got != GGUF_SHA:
        sys.exit(f"{path}: sha256 {got}, expected {GGUF_SHA} (run scripts/setup.sh)")
    reader = GGUFReader(str(path))
    source = gguf_string(reader, "tokenizer.chat_template")
    env = environment()
    template = env.from_string(source)

    def render(messages, tools, add_generation_prompt):
        return template.render(messages=messages, tools=tools, documents=None,
                               add_generation_prompt=add_generation_prompt)

    greedy = json.loads((ROOT / "tests/fixtures/gguf-dequant/qwen2.5-coder-1.5b-greedy.json").read_text())
    for case in greedy["cases"]:
        mine = render(case["messages"], None, True)
        if mine != case["rendered"]:
            sys.exit(f"jinja2 differs from transformers on {case['messages']!r}:\n{mine!r}\n{case['rendered']!r}")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "chat_template.jinja").write_text(source, encoding="utf-8")
    out = {
        "made_with": f"jinja2 {jinja2.__version__} set up as transformers' apply_chat_template; "
                     "scripts/reference/make_qwen25_template_fixture.py",
        "gguf": {"file": path.name, "sha256": GGUF_SHA, "key": "tokenizer.chat_template"},
        "template_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "cases": [
            {"name": name, "messages": msgs, "tools": tools,
             "add_generation_prompt": agp, "rendered": render(msgs, tools, agp)}
            for name, msgs, tools, agp in cases()
        ],
    }
    (OUT / "renders.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}/chat_template.jinja ({len(source)} chars) and renders.json ({len(out['cases'])} cases)")


if __name__ == "__main__":
    main()
