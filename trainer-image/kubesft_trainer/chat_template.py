"""Resolve `spec.model.chatTemplate` to Jinja source and render conversations with it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
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
    return render_prepared(
        [template_messages(messages) for messages in conversations],
        template,
        template_variables(tokenizer),
        add_generation_prompt=add_generation_prompt,
        tools=template_tools(tools),
    )


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The messages as transformers hands them to a template: rebuilt from plain JSON types,
    reasoning under each name templates read (`reasoning_content`, `thinking`).

    Converting twice changes nothing, so a prefix of the result renders as that prefix of
    `messages` would: masking converts a conversation once and renders many prefixes.
    """
    internals = _internals()
    if internals is None:
        return [dict(m) for m in messages]
    plain: list[dict[str, Any]] = internals.alias(internals.plain([dict(m) for m in messages]))
    return plain


def template_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Tool schemas as templates see them (plain JSON types), or None for no tools."""
    if not tools:
        return None
    internals = _internals()
    converted = [dict(tool) for tool in tools]
    return internals.plain(converted) if internals is not None else converted


def template_variables(tokenizer: Any) -> dict[str, Any]:
    """What a template reads of the tokenizer: its special tokens (`bos_token`, ...)."""
    special = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
    internals = _internals()
    return internals.plain(special) if internals is not None else special


def render_prepared(
    conversations: Sequence[list[dict[str, Any]]],
    template: str,
    variables: Mapping[str, Any],
    *,
    add_generation_prompt: bool = False,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """`render_with_generation` of conversations already converted by `template_messages`,
    with `template_variables` and `template_tools`.

    Renders with transformers' compiled template (its sandbox, filters, globals and
    `{% generation %}` tracker) and the same variables its `render_jinja_template` passes,
    without the per-call work that was about half of masking's rendering time on ChatML:
    that function rebuilds each conversation from plain types on every call (masking
    renders several prefixes of one conversation), and jinja's `Template.render` merges the
    template's globals (a ChainMap) into a new dict for every render, where this merges a
    flattened copy. Where the installed transformers lacks those internals, its public
    renderer does the same work.
    """
    markers = has_generation_markers(template)
    compiled = _compiled(template)
    if compiled is None:
        # Annotated `-> str` upstream, but it returns (rendered conversations, indices).
        result: Any = render_jinja_template(
            conversations=list(conversations),
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            return_assistant_tokens_mask=markers,
            tools=list(tools) if tools else None,
            **variables,
        )
        texts = [str(text) for text in result[0]]
        spans = [list(map(tuple, s)) for s in result[1]] if markers else [[] for _ in texts]
        return texts, spans
    options = {
        "tools": tools,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
        **variables,
    }
    if not markers:
        texts = [compiled.render({"messages": chat, **options}) for chat in conversations]
        return texts, [[] for _ in conversations]
    texts, spans = [], []
    for chat in conversations:
        text, indices = compiled.render_marked(
            compiled_template=compiled.template, messages=chat, **options
        )
        texts.append(text)
        spans.append([(int(s), int(e)) for s, e in indices])
    return texts, spans


@dataclass(frozen=True)
class _Compiled:
    """A template compiled by transformers, with what rendering it needs."""

    template: Any
    """A `jinja2.Template` of transformers' sandboxed chat-template environment."""
    globals: dict[str, Any]
    """Its globals (`raise_exception`, `namespace`, ...), flattened once."""
    render_marked: Callable[..., tuple[str, list[tuple[int, int]]]]
    """transformers' renderer that also returns the `{% generation %}` spans."""

    def render(self, variables: Mapping[str, Any]) -> str:
        """`Template.render(**variables)`, with the globals merged from a plain dict."""
        template = self.template
        context = template.new_context({**self.globals, **variables}, shared=True)
        try:
            return str(template.environment.concat(template.root_render_func(context)))
        except Exception:
            template.environment.handle_exception()  # re-raises, as `Template.render` does
            raise


@lru_cache(maxsize=32)
def _compiled(template: str) -> _Compiled | None:
    internals = _internals()
    if internals is None:
        return None
    compiled = internals.compile(template)
    return _Compiled(compiled, dict(compiled.globals), internals.render_marked)


@dataclass(frozen=True)
class _Internals:
    """The pieces of transformers' `render_jinja_template` that `render_prepared` reuses."""

    compile: Callable[[str], Any]
    plain: Callable[[Any], Any]
    alias: Callable[[Any], Any]
    render_marked: Callable[..., tuple[str, list[tuple[int, int]]]]


@cache
def _internals() -> _Internals | None:
    from transformers.utils import chat_template_utils as utils

    names = (
        "_compile_jinja_template",
        "_plain_template_data",
        "_alias_reasoning_fields",
        "_render_with_assistant_indices",
    )
    found = [getattr(utils, name, None) for name in names]
    if not all(callable(f) for f in found):
        return None
    return _Internals(*found)  # type: ignore[arg-type]


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
