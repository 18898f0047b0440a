"""Masking on every chat template the installed TRL wheel ships (its `chat_templates/`).

Templates are found at run time, so a TRL upgrade that adds one tests it too. For a
template with a `_training` variant (TRL's copy with `{% generation %}` markers) that renders
the same text, kubesft's spans on the *original* must equal the variant's marked spans as
transformers computes them. For the others an independent check: every assistant content,
call and reasoning is graded, and no role header, user, system or tool text is.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from kubesft_trainer.chat_template import (
    has_generation_markers,
    render_conversations,
    render_with_generation,
)
from kubesft_trainer.template_probe import adapt_messages, probe_template
from kubesft_trainer.turns import GradedText, render_graded

TEMPLATES_DIR = Path(str(resources.files("trl") / "chat_templates"))
ORIGINALS = sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja") if "_training" not in p.stem)
TOKENIZER = SimpleNamespace(
    special_tokens_map={"bos_token": "<BOS>", "eos_token": "<EOS>", "pad_token": "<PAD>"}
)

SYSTEM = "Reply in one short sentence."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Lisbon"}},
}
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "single": (
        [
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "Seven is prime."},
        ],
        None,
    ),
    "system_two_turns": (
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "Seven is prime."},
            {"role": "user", "content": "And an even one?"},
            {"role": "assistant", "content": "Two is the even prime."},
        ],
        None,
    ),
    "tool_round_trip": (
        [
            {"role": "user", "content": "Weather in the capital of Portugal?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "get_weather",
                "content": '{"temp_c": 21}',
            },
            {"role": "assistant", "content": "It is 21 degrees there."},
        ],
        [WEATHER_TOOL],
    ),
    "reasoning": (
        [
            {"role": "user", "content": "Is 91 prime?"},
            {
                "role": "assistant",
                "reasoning_content": "Try small factors: 91 = 7 * 13.",
                "content": "No, 91 = 7 * 13.",
            },
        ],
        None,
    ),
    "reasoning_two_turns": (
        [
            {"role": "user", "content": "Is 91 prime?"},
            {
                "role": "assistant",
                "reasoning_content": "Try small factors: 91 = 7 * 13.",
                "content": "No, 91 = 7 * 13.",
            },
            {"role": "user", "content": "And 97?"},
            {
                "role": "assistant",
                "reasoning_content": "No factor up to 9 divides 97.",
                "content": "Yes, 97 is prime.",
            },
        ],
        None,
    ),
}

# (template, case) pairs a supported template cannot mask; the refusal must say this.
UNSUPPORTED: dict[tuple[str, str], str] = {}

# Where kubesft's spans knowingly differ from the `_training` variant's, with the graded texts.
# diffusion_gemma writes `<|tool_response>` at the end of the call turn and a fresh
# `<|turn>model\n` header after the tool result, neither of which the prompt at inference
# holds, so the model must write them; TRL's variant marks neither.
KNOWN_DIFFERENCES: dict[tuple[str, str], list[str]] = {
    ("diffusion_gemma", "tool_round_trip"): [
        '<|tool_call>call:get_weather{city:<|"|>Lisbon<|"|>}<tool_call|><|tool_response>',
        "<|turn>model\nIt is 21 degrees there.<turn|>",
    ],
}


def template(name: str) -> str:
    return (TEMPLATES_DIR / f"{name}.jinja").read_text()


def variant_spans(name: str, messages, tools) -> tuple[str, list[tuple[int, int]]] | None:
    """Text and `{% generation %}` spans of the `_training` variant, as transformers renders."""
    path = TEMPLATES_DIR / f"{name}_training.jinja"
    if not path.exists():
        return None
    source = path.read_text()
    adapted = adapt_messages(messages, probe_template(source, TOKENIZER))
    texts, indices = render_jinja_template(
        conversations=[adapted],
        chat_template=source,
        tools=tools,
        return_assistant_tokens_mask=True,
        **TOKENIZER.special_tokens_map,
    )
    text = texts[0]
    spans = [(s, len(text[:e].rstrip())) for s, e in indices[0]]
    return text, [s for s in spans if s[1] > s[0] and text[s[0] : s[1]].strip()]


def strip_whitespace(text: str, spans) -> list[tuple[int, int]]:
    return [(s + len(text[s:e]) - len(text[s:e].lstrip()), e) for s, e in spans]


def not_graded(messages) -> list[str]:
    return [m["content"] for m in messages if m["role"] != "assistant"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ORIGINALS)
def test_trl_template_masks_assistant_output_only(name: str, case: str) -> None:
    messages, tools = CASES[case]
    source = template(name)
    if not renders_row(source, messages, tools):
        # The family has no way to write this turn (no reasoning or tool-call syntax): a
        # data/template mismatch the user must hear about, not a masking gap.
        with pytest.raises(ValueError, match=r"spec\.model\.chatTemplate"):
            render_graded(messages, source, TOKENIZER, "assistant", tools)
        return
    if (name, case) in UNSUPPORTED:
        with pytest.raises(ValueError, match=r"spec\.model\.chatTemplate") as refused:
            render_graded(messages, source, TOKENIZER, "assistant", tools)
        assert UNSUPPORTED[name, case] in str(refused.value)
        return
    texts = render_graded(messages, source, TOKENIZER, "assistant", tools)
    graded_turns = sorted(i for text in texts for i, _ in text.turns)
    assert graded_turns == [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if (name, case) in KNOWN_DIFFERENCES:
        (text,) = texts
        assert [text.text[s:e] for s, e in text.spans] == KNOWN_DIFFERENCES[name, case]
        return
    reference = variant_spans(name, messages, tools)
    if reference is not None and len(texts) == 1 and reference[0] == texts[0].text:
        assert_matches_variant(texts[0], reference[1], messages, source, tools)
    else:
        for text in texts:
            independent_check(text, messages)


def renders_row(source: str, messages, tools) -> bool:
    """Whether the template writes each assistant turn's reasoning and tool-call arguments
    when that turn is the conversation's last (as at inference)."""
    adapted = adapt_messages(messages, probe_template(source, TOKENIZER))
    shift = len(messages) - len(adapted)
    for i, message in enumerate(messages):
        written = [
            message.get("reasoning_content"),
            "Lisbon" if message.get("tool_calls") else None,
        ]
        if message["role"] != "assistant" or not any(written):
            continue
        try:
            text = render_conversations([adapted[: i + 1 - shift]], source, TOKENIZER, tools=tools)[
                0
            ]
        except Exception:  # the template's own refusal (e.g. roles must alternate)
            return False
        if not all(w in text for w in written if w):
            return False
    try:
        render_conversations([adapted], source, TOKENIZER, tools=tools)
    except Exception:
        return False
    return True


def merged(text: str, spans) -> list[tuple[int, int]]:
    """Spans with leading whitespace trimmed and touching spans joined."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        s += len(text[s:e]) - len(text[s:e].lstrip())
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        elif e > s:
            out.append((s, e))
    return out


def assert_matches_variant(ours: GradedText, theirs, messages, source: str, tools) -> None:
    """Equal to TRL's marked spans, except text TRL marks that kubesft rightly leaves out:
    the eos Phi-3 writes after the last message only, and text the inference prompt already
    holds (a role header such as gpt-oss's `<|start|>assistant`, DeepSeek's
    `<｜Assistant｜>`, Qwen3.5's `<think>\n`), which the model reads, not writes."""
    text = ours.text
    theirs = [
        s
        for s in merged(text, theirs)
        if text[s[0] : s[1]] != TOKENIZER.special_tokens_map["eos_token"]
        or s[1] != len(text.rstrip())
    ]
    mine = merged(text, ours.spans)
    assert [e for _, e in mine] == [e for _, e in theirs], (mine, theirs)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    prompts = render_conversations(
        [adapt_messages(messages[:i], probe_template(source, TOKENIZER)) for i in turns],
        source,
        TOKENIZER,
        add_generation_prompt=True,
        tools=tools,
    )
    for (start, _), (their_start, _), prompt in zip(mine, theirs, prompts, strict=True):
        assert start >= their_start
        left_out = text[their_start:start].rstrip()
        assert prompt[their_start : their_start + len(left_out)] == left_out, "graded text left out"


def independent_check(text: GradedText, messages) -> None:
    for index, spans in text.turns:
        graded = "".join(text.text[s:e] for s, e in spans)
        head = graded[:24].lower()
        assert "assistant" not in head and "model" not in head, (index, graded)
    graded_all = "\x00".join(text.text[s:e] for s, e in text.spans)
    for other in not_graded(messages):
        assert other not in graded_all
    assert json.dumps(text.spans)  # spans are plain pairs


DOCS = Path(__file__).resolve().parents[2] / "docs" / "chat-templates.md"


def support_row(name: str) -> str:
    """The docs table's row for a template, derived from what masking does with it."""
    source = template(name)
    traits = probe_template(source, TOKENIZER)
    how = []
    expanded = False
    shapes = {}
    for case, (messages, tools) in CASES.items():
        try:
            texts = render_graded(messages, source, TOKENIZER, "assistant", tools)
            expanded |= len(texts) > 1
            shapes[case] = "yes"
        except ValueError:
            shapes[case] = "refused"
    how.append("per-turn" if expanded else "structural")
    if traits.content_parts:
        how.append("text parts")
    if traits.fold_system:
        how.append("system folded into the first user turn")
    if traits.trailer:
        shown = (
            "eos_token"
            if traits.trailer == TOKENIZER.special_tokens_map["eos_token"]
            else traits.trailer
        )
        how.append(f"`{shown}` after the last turn not graded")
    variant = "yes" if (TEMPLATES_DIR / f"{name}_training.jinja").exists() else "no"
    return (
        f"| `{name}` | {', '.join(how)} | {shapes['tool_round_trip']} | "
        f"{shapes['reasoning']} | {variant} |"
    )


def test_docs_table_says_what_masking_does() -> None:
    table = DOCS.read_text()
    missing = [row for row in map(support_row, ORIGINALS) if row not in table]
    assert not missing, "docs/chat-templates.md is out of date; rows now:\n" + "\n".join(missing)


ALL_TEMPLATES = sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_rendering_equals_transformers_renderer(name: str) -> None:
    """kubesft renders without transformers' per-call work (chat_template.render_prepared);
    the text, the `{% generation %}` spans and the refusals must be transformers' own."""
    source = template(name)
    markers = has_generation_markers(source)
    for case, (messages, tools) in CASES.items():
        adapted = adapt_messages(messages, probe_template(source, TOKENIZER))
        for prefix in range(len(adapted) + 1):
            for add_generation_prompt in (False, True):
                conversation = adapted[:prefix]
                try:
                    expected: Any = render_jinja_template(
                        conversations=[conversation],
                        chat_template=source,
                        tools=tools,
                        add_generation_prompt=add_generation_prompt,
                        return_assistant_tokens_mask=markers,
                        **TOKENIZER.special_tokens_map,
                    )
                except Exception as error:  # the template's own refusal
                    with pytest.raises(type(error)):
                        render_with_generation(
                            [conversation],
                            source,
                            TOKENIZER,
                            add_generation_prompt=add_generation_prompt,
                            tools=tools,
                        )
                    continue
                texts, spans = render_with_generation(
                    [conversation],
                    source,
                    TOKENIZER,
                    add_generation_prompt=add_generation_prompt,
                    tools=tools,
                )
                where = (case, prefix, add_generation_prompt)
                assert texts == expected[0], where
                assert spans == ([list(map(tuple, expected[1][0]))] if markers else [[]]), where


def test_rendering_without_transformers_internals_is_the_same(monkeypatch) -> None:
    """A transformers without the internals `render_prepared` reuses: its public renderer."""
    from kubesft_trainer import chat_template

    names = ("qwen3", "qwen3_training", "llama3", "gemma")
    cases = [CASES[case][0] for case in ("single", "system_two_turns", "reasoning_two_turns")]
    fast = {
        name: render_with_generation(
            [adapt_messages(m, probe_template(template(name), TOKENIZER)) for m in cases],
            template(name),
            TOKENIZER,
        )
        for name in names
    }
    monkeypatch.setattr(chat_template, "_internals", lambda: None)
    monkeypatch.setattr(chat_template, "_compiled", lambda source: None)
    for name in names:
        conversations = [
            adapt_messages(m, probe_template(template(name), TOKENIZER)) for m in cases
        ]
        assert render_with_generation(conversations, template(name), TOKENIZER) == fast[name]
