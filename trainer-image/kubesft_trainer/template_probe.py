"""What a chat template expects of its input, learned once per template by rendering probes.

Model families disagree on small conventions that decide whether a row's text reaches the
rendering at all: vision templates (idefics3, smolvlm) read only lists of content parts,
Gemma refuses a system turn (its own convention folds the system prompt into the first user
turn), templates want tool-call `arguments` as a mapping or as a JSON string, and
DeepSeek's render calls only when `content` is null. Probing the template with tiny
conversations answers each question from its behaviour instead of from its name, so a
template we have never seen is handled the same way. Results are cached per template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2

from kubesft_trainer.chat_template import has_generation_markers, render_conversations

PROBE_SYSTEM = "kubesft-probe-system"
PROBE_USER = "kubesft-probe-user"
PROBE_ANSWER = "kubesft-probe-answer"
PROBE_ARGUMENT = "kubesft-probe-argument"

# Errors a template may raise on a probe: its own raise_exception, or a type it cannot handle.
TEMPLATE_ERRORS = (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError)


@dataclass(frozen=True)
class TemplateTraits:
    """How rows must be shaped for one template; see the module docstring."""

    markers: bool
    """Assistant output is enclosed in `{% generation %}` markers."""
    content_parts: bool
    """Content must be a list of `{"type": "text", "text": ...}` parts."""
    fold_system: bool
    """A system turn is refused or dropped: fold it into the first user turn."""
    arguments_as_string: bool
    """Tool-call arguments are rendered from a JSON string, not a mapping."""
    call_content_none: bool
    """An assistant turn with tool calls and no text needs `content: null`."""
    ignores_generation_prompt: bool
    """`add_generation_prompt` changes nothing, so a turn's role header is not in the prompt."""
    trailer: str
    """Text written after the last message only (Phi-3's eos), not part of the last turn."""


def probe_template(template: str, tokenizer: Any) -> TemplateTraits:
    """The traits of `template` rendered with `tokenizer`'s special tokens (cached)."""
    special = tuple(sorted((getattr(tokenizer, "special_tokens_map", {}) or {}).items()))
    return _probe(template, special)


@dataclass(frozen=True)
class _SpecialTokens:
    """What rendering reads of a tokenizer: its special tokens."""

    special_tokens_map: dict[str, Any]


@lru_cache(maxsize=32)
def _probe(template: str, special: tuple[tuple[str, Any], ...]) -> TemplateTraits:
    tokenizer = _SpecialTokens(dict(special))

    def renders(messages: Sequence[Mapping[str, Any]], wanted: str, **options: Any) -> bool:
        try:
            text = render_conversations([messages], template, tokenizer, **options)[0]
        except TEMPLATE_ERRORS:
            return False
        return wanted in text

    user = {"role": "user", "content": PROBE_USER}
    content_parts = not renders([user], PROBE_USER) and renders(
        [{"role": "user", "content": [{"type": "text", "text": PROBE_USER}]}], PROBE_USER
    )

    def shaped(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [with_content_parts(m) for m in messages] if content_parts else messages

    answer = {"role": "assistant", "content": PROBE_ANSWER}
    system = {"role": "system", "content": PROBE_SYSTEM}
    folded = {"role": "user", "content": f"{PROBE_SYSTEM}\n\n{PROBE_USER}"}
    fold_system = not renders(shaped([system, user, answer]), PROBE_SYSTEM) and renders(
        shaped([folded, answer]), PROBE_SYSTEM
    )
    call_shape = (False, False)
    for as_string in (False, True):
        for content_none in (False, True):
            arguments: Any = {"argument": PROBE_ARGUMENT}
            call = {
                "type": "function",
                "id": "call_0",
                "function": {
                    "name": "probe_function",
                    "arguments": json.dumps(arguments) if as_string else arguments,
                },
            }
            turn = {
                "role": "assistant",
                "content": None if content_none else "",
                "tool_calls": [call],
            }
            if renders([*shaped([user]), turn], PROBE_ARGUMENT):
                call_shape = (as_string, content_none)
                break
        else:
            continue
        break
    trailer = ""
    try:
        ended, continued = (
            render_conversations(
                [shaped([user, answer])], template, tokenizer, add_generation_prompt=gp
            )[0]
            for gp in (False, True)
        )
        trailer = ended[token_end(ended, common_prefix(ended, continued)) :]
    except TEMPLATE_ERRORS:
        pass
    try:
        bare, prompted = (
            render_conversations([shaped([user])], template, tokenizer, add_generation_prompt=gp)[0]
            for gp in (False, True)
        )
        ignores = bare == prompted
    except TEMPLATE_ERRORS:
        ignores = False
    return TemplateTraits(
        markers=has_generation_markers(template),
        content_parts=content_parts,
        fold_system=fold_system,
        arguments_as_string=call_shape[0],
        call_content_none=call_shape[1],
        ignores_generation_prompt=ignores,
        trailer=trailer.strip(),
    )


def _open_token(text: str, at: int) -> int:
    """Where a `<...>` special token cut at `at` begins, or -1 when `at` cuts none."""
    opened = text.rfind("<", 0, at)
    return opened if opened >= 0 and text.find(">", opened, at) < 0 else -1


def token_start(text: str, at: int) -> int:
    """`at`, moved back to the start of a special token it would cut (`<think>` and
    `<｜tool▁calls▁begin｜>` share their first character, not their meaning)."""
    opened = _open_token(text, at)
    return opened if opened >= 0 else at


def token_end(text: str, at: int) -> int:
    """`at`, moved on to the end of a special token it would cut (gpt-oss ends a final turn
    with `<|return|>` and the same turn in history with `<|end|>`). A token after whitespace
    is not the turn's own: Phi-3's eos follows `<|end|>\n` only at the conversation's end."""
    opened = _open_token(text, at)
    if opened < 0:
        return at
    if opened == 0 or text[opened - 1].isspace():
        return opened
    closed = text.find(">", at)
    return closed + 1 if closed >= 0 else at


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings (binary search over C compares;
    one compare when one is a prefix of the other, as a prompt usually is of its turn)."""
    if b.startswith(a):
        return len(a)
    if a.startswith(b):
        return len(b)
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def with_content_parts(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message with string content as one text part (the vision templates' shape)."""
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": [{"type": "text", "text": content}]}
    return dict(message)


def adapt_messages(
    messages: Sequence[Mapping[str, Any]], traits: TemplateTraits
) -> list[dict[str, Any]]:
    """Normalized messages in the shape the template renders fully (see TemplateTraits).

    Keys kubesft uses and templates do not know (`weight`) are left out.
    """
    out = []
    for message in messages:
        adapted = {k: v for k, v in message.items() if k != "weight"}
        calls = adapted.get("tool_calls")
        if calls:
            adapted["tool_calls"] = [_adapt_call(call, traits) for call in calls]
            if traits.call_content_none and not adapted.get("content"):
                adapted["content"] = None
        out.append(adapted)
    if traits.fold_system and out and out[0]["role"] == "system":
        system, rest = out[0], out[1:]
        if rest and rest[0]["role"] == "user":
            rest[0] = {**rest[0], "content": f"{system['content']}\n\n{rest[0]['content']}"}
            out = rest
    if traits.content_parts:
        out = [with_content_parts(m) for m in out]
    return out


def _adapt_call(call: Mapping[str, Any], traits: TemplateTraits) -> dict[str, Any]:
    function = dict(call["function"])
    arguments = function.get("arguments")
    if traits.arguments_as_string and not isinstance(arguments, str):
        function["arguments"] = json.dumps(arguments, ensure_ascii=False)
    elif not traits.arguments_as_string and isinstance(arguments, str):
        function["arguments"] = json.loads(arguments)
    return {**call, "function": function}
