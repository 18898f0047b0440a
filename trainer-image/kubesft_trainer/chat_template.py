"""Resolve `spec.model.chatTemplate` to Jinja source and render conversations with it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from transformers.utils.chat_template_utils import render_jinja_template

BUILTIN_TEMPLATES = ("chatml", "llama3")
ROLES = ("system", "user", "assistant", "tool")

Message = Mapping[str, Any]
GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
"""`{% generation %}`, the tag transformers and TRL use to mark what the model writes."""


@cache
def load_builtin_template(name: str) -> str:
    """Jinja source of a template shipped in `kubesft_trainer/templates/`."""
    if name not in BUILTIN_TEMPLATES:
        expected = ", ".join(BUILTIN_TEMPLATES)
        raise ValueError(f"unknown built-in chat template {name!r}; expected one of {expected}")
    return (resources.files("kubesft_trainer") / "templates" / f"{name}.jinja").read_text()


def is_inline_template(spec: str) -> bool:
    """A chatTemplate value holding Jinja markup rather than a name."""
    return "{%" in spec or "{{" in spec


def resolve_chat_template(spec: str, tokenizer: Any) -> str:
    """Jinja source for `spec.model.chatTemplate`: auto, a built-in name or inline Jinja.

    `auto` prefers the model's own template because the model was trained on it; a base
    model without one gets ChatML, whose markers are plain text any tokenizer can encode.
    """
    if spec == "auto":
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, str) and own.strip():
            return own
        return load_builtin_template("chatml")
    if spec in BUILTIN_TEMPLATES:
        return load_builtin_template(spec)
    if is_inline_template(spec):
        return spec
    raise ValueError(
        f"spec.model.chatTemplate must be 'auto', one of {', '.join(BUILTIN_TEMPLATES)} "
        f"or inline Jinja containing '{{%' or '{{{{' (got {spec!r})"
    )


def template_name(template: str) -> str:
    """Short human name of a template for error messages."""
    for name in BUILTIN_TEMPLATES:
        if template == load_builtin_template(name):
            return name
    # A leading Jinja comment is usually the same licence or note in many templates.
    body = re.sub(r"^(\s*\{#.*?#\})+", "", template, flags=re.DOTALL).strip()
    first_line = body.splitlines()[0] if body else ""
    return f"inline template starting {first_line[:60]!r}"


def render_conversation(
    messages: Sequence[Message],
    template: str,
    tokenizer: Any,
    *,
    add_generation_prompt: bool = False,
) -> str:
    """Render messages to text exactly as `apply_chat_template(tokenize=False)` would.

    Uses transformers' renderer (same sandbox, globals and special-token variables) but,
    unlike `apply_chat_template`, accepts an empty conversation: masking needs the
    generation prompt before a leading assistant turn.
    """
    return render_conversations(
        [messages], template, tokenizer, add_generation_prompt=add_generation_prompt
    )[0]


def render_conversations(
    conversations: Sequence[Sequence[Message]],
    template: str,
    tokenizer: Any,
    *,
    add_generation_prompt: bool = False,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """`render_conversation` of each conversation, in one call to transformers' renderer.

    Masking renders several prefixes of a conversation; one call for all of them pays the
    renderer's per-call setup once. `tools` (OpenAI function schemas) go to every one.
    """
    return render_with_generation(
        conversations, template, tokenizer, add_generation_prompt=add_generation_prompt, tools=tools
    )[0]


def render_with_generation(
    conversations: Sequence[Sequence[Message]],
    template: str,
    tokenizer: Any,
    *,
    add_generation_prompt: bool = False,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Rendered texts and, for a template with `{% generation %}` markers, the character
    spans the markers enclose in each (empty lists for a template without markers)."""
    for messages in conversations:
        check_roles(messages)
    special_tokens = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
    markers = has_generation_markers(template)
    # Annotated `-> str` upstream, but it returns (rendered conversations, generation indices).
    result: Any = render_jinja_template(
        conversations=[[dict(m) for m in messages] for messages in conversations],
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        return_assistant_tokens_mask=markers,
        tools=[dict(tool) for tool in tools] if tools else None,
        **special_tokens,
    )
    texts = [str(text) for text in result[0]]
    spans = [list(map(tuple, s)) for s in result[1]] if markers else [[] for _ in texts]
    return texts, spans


@cache
def has_generation_markers(template: str) -> bool:
    """Whether the template marks the assistant's output with `{% generation %}`."""
    return GENERATION_MARKER.search(template) is not None


def check_roles(messages: Sequence[Message]) -> None:
    """ValueError naming the first message whose role kubesft does not know."""
    for index, message in enumerate(messages):
        if message.get("role") not in ROLES:
            raise ValueError(
                f"messages[{index}].role must be one of {', '.join(ROLES)} "
                f"(got {message.get('role')!r})"
            )
