"""Find, in a rendered conversation, the characters each graded assistant turn writes.

One algorithm for every chat template, located from the template's structure and never by
searching for the answer text. For assistant turn i, with P = `messages[:i]` rendered with
the generation prompt and F = `messages[:i + 1]` rendered without it:

- the turn starts where P and F part (what inference feeds the model is not graded: the
  role header, an injected `<think>\\n`), and ends where F and F-with-a-generation-prompt
  part, less trailing whitespace (text a template adds only at the very end of a
  conversation, such as Phi-3's eos, is not what the model writes for the turn);
- a template with `{% generation %}` markers is taken at its word instead: turn i is the
  marked text of F after P;
- a template that ignores `add_generation_prompt` has the role header in F only: a render
  of the turn with a placeholder content shows where the template puts content, and the
  header before it is skipped.

The turn is then looked up in the whole conversation T: when T starts with F up to the
turn's end, the history rendered at inference and in training agree and T grades the
turn. Otherwise (Qwen3 and DeepSeek-R1 drop earlier reasoning, gpt-oss earlier analysis)
the turn becomes an example of its own, F, so each turn is trained on exactly the text the
model sees and writes at inference. Where a template drops what a row holds (content, a
tool call, reasoning), the row is refused: training on a rendering without it would teach
the model something other than the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kubesft_trainer.chat_template import (
    check_roles,
    render_prepared,
    template_messages,
    template_tools,
    template_variables,
)
from kubesft_trainer.chat_template import template_name as _template_name
from kubesft_trainer.template_probe import (
    TEMPLATE_ERRORS,
    TemplateTraits,
    adapt_messages,
    common_prefix,
    probe_template,
    token_start,
    with_content_parts,
)

Span = tuple[int, int]
LossOn = Literal["assistant", "completion", "all"]
PLACEHOLDER = "kubesft-placeholder-content"


@dataclass(frozen=True)
class GradedText:
    """One training text and its graded character spans, in order."""

    text: str
    spans: list[Span]
    turns: list[tuple[int, list[Span]]] = field(default_factory=list)
    """Each assistant turn graded in this text: its index in the row's messages, its spans."""


@dataclass(frozen=True)
class _Turn:
    index: int
    rendered: str  # messages[:index + 1] rendered (the whole conversation for the last)
    spans: list[Span]

    @property
    def end(self) -> int:
        return self.spans[-1][1] if self.spans else 0


def render_graded(
    messages: Sequence[Mapping[str, Any]],
    template: str,
    tokenizer: Any,
    loss_on: LossOn,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[GradedText]:
    """The texts to train on for one conversation: usually one, one per turn where needed.

    Raises ValueError naming the template when it refuses the conversation or drops a
    graded turn's content, tool call or reasoning.
    """
    check_roles(messages)
    traits = probe_template(template, tokenizer)
    adapted = adapt_messages(messages, traits)
    shift = len(messages) - len(adapted)  # 1 when the system turn was folded into the user's
    render = _Renderer(template, template_variables(tokenizer), template_tools(tools))
    try:
        if loss_on == "all":
            whole = render([template_messages(adapted)])[0][0]
            return [GradedText(whole, [(0, len(whole))] if whole else [])]
        graded = [
            i
            for i, m in enumerate(messages)
            if m["role"] == "assistant" and m.get("weight", 1) != 0
        ]
        if loss_on == "completion":
            graded = graded[-1:] if graded and graded[-1] == _last_assistant(messages) else []
        turns = _locate(adapted, [i - shift for i in graded], traits, render)
    except TEMPLATE_ERRORS as error:
        raise ValueError(
            f"chat template {_template_name(template)} (spec.model.chatTemplate) refused this "
            f"conversation: {error}"
        ) from error
    texts = _group(turns, shift)
    for text in texts:
        for index, spans in text.turns:
            _check_graded(messages[index], index, text.text, spans, template)
    return texts


def render_prompt(
    messages: Sequence[Mapping[str, Any]],
    template: str,
    tokenizer: Any,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The prompt the model answers at inference: the messages, shaped as `render_graded`
    shapes them for the template, rendered with the generation prompt."""
    adapted = template_messages(adapt_messages(messages, probe_template(template, tokenizer)))
    render = _Renderer(template, template_variables(tokenizer), template_tools(tools))
    return render([adapted], add_generation_prompt=True)[0][0]


def _last_assistant(messages: Sequence[Mapping[str, Any]]) -> int:
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")


@dataclass(frozen=True)
class _Renderer:
    """One template with one tokenizer's variables and one row's tools, for many renders."""

    template: str
    variables: dict[str, Any]
    tools: list[dict[str, Any]] | None

    def __call__(
        self, conversations: Sequence[list[dict[str, Any]]], add_generation_prompt: bool = False
    ) -> tuple[list[str], list[list[Span]]]:
        """Texts and `{% generation %}` spans of conversations from `template_messages`."""
        return render_prepared(
            conversations,
            self.template,
            self.variables,
            add_generation_prompt=add_generation_prompt,
            tools=self.tools,
        )


def _locate(
    adapted: list[dict[str, Any]], graded: list[int], traits: TemplateTraits, render: _Renderer
) -> list[_Turn]:
    """Each graded turn's own rendering and spans; the whole conversation comes last."""
    messages = template_messages(adapted)
    last = len(messages) - 1
    full_ups = [i + 1 for i in graded if i < last] + [len(messages)]
    placeholders = [
        [*messages[:i], *template_messages([_placeholder_turn(messages[i], traits.content_parts)])]
        for i in graded
        if traits.ignores_generation_prompt and not traits.markers
    ]
    texts, generations = render([messages[:n] for n in full_ups] + placeholders)
    rendered = dict(zip(full_ups, texts, strict=False))
    marked = dict(zip(full_ups, generations, strict=False))
    shaped = dict(zip(graded, texts[len(full_ups) :], strict=False))
    prompts = render([messages[:i] for i in graded], add_generation_prompt=True)[0]
    ends = _turn_ends(rendered, graded, traits.trailer)
    turns = []
    for i, prompt, end in zip(graded, prompts, ends, strict=True):
        text = rendered[i + 1]
        start = token_start(text, common_prefix(prompt, text))
        if traits.markers:
            spans = [(s, _rstrip(text, e)) for s, e in marked[i + 1] if e > start]
        else:
            if i in shaped:
                start = _skip_header(text, start, shaped[i])
            spans = [(start, end)] if end > start else []
        turns.append(_Turn(i, text, [s for s in spans if s[1] > s[0]]))
    if not turns or turns[-1].rendered != rendered[len(messages)]:
        turns.append(_Turn(-1, rendered[len(messages)], []))
    return turns


def _placeholder_turn(message: Mapping[str, Any], parts: bool) -> dict[str, Any]:
    turn = {"role": message["role"], "content": PLACEHOLDER}
    return with_content_parts(turn) if parts else turn


def _turn_ends(rendered: dict[int, str], graded: list[int], trailer: str) -> list[int]:
    """Where each turn ends: its rendering less the template's end-of-conversation trailer."""
    ends = []
    for i in graded:
        text = rendered[i + 1]
        end = len(text) - len(trailer) if trailer and text.endswith(trailer) else len(text)
        ends.append(_rstrip(text, end))
    return ends


def _skip_header(text: str, start: int, shaped: str) -> int:
    """Past the role header a template without a generation prompt writes before content."""
    at = shaped.find(PLACEHOLDER)
    if at < start or shaped[:start] != text[:start]:
        return start
    header = shaped[start:at]
    return start + len(header) if text.startswith(header, start) else start


def _group(turns: list[_Turn], shift: int) -> list[GradedText]:
    """Turns grouped into as few texts as keep each turn's history as at inference."""
    groups: list[tuple[str, list[_Turn]]] = []
    for turn in reversed(turns):
        if groups and groups[-1][0].startswith(turn.rendered[: turn.end]):
            if turn.index >= 0:
                groups[-1][1].append(turn)
        else:
            groups.append((turn.rendered, [turn] if turn.index >= 0 else []))
    return [
        GradedText(
            text,
            [span for turn in reversed(members) for span in turn.spans],
            [(turn.index + shift, turn.spans) for turn in reversed(members)],
        )
        for text, members in reversed(groups)
    ]


def _check_graded(
    message: Mapping[str, Any], index: int, text: str, spans: list[Span], template: str
) -> None:
    """The invariant: what the assistant wrote is in the rendering, inside its graded spans."""
    graded = "\x00".join(text[s:e] for s, e in spans)
    for what, needles in _written(message):
        if not any(needle in graded for needle in needles):
            where = "does not grade" if any(needle in graded for needle in needles) else "drops"
            raise ValueError(
                f"messages[{index}].{what}: chat template {_template_name(template)} {where} "
                "it, so the model would not learn it; set spec.model.chatTemplate to a template "
                "that renders it (chatml renders content, tool calls and reasoning)"
            )


def _written(message: Mapping[str, Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(field, ways a template may write it) for what the assistant wrote in a turn."""
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        yield "content", (content.strip(),)
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning.strip():
        yield "reasoning_content", (reasoning.strip(),)
    for n, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function", {})
        yield f"tool_calls[{n}].function.name", (str(function.get("name")),)
        for leaf in _leaves(function.get("arguments")):
            yield f"tool_calls[{n}].function.arguments", leaf


def _leaves(arguments: Any) -> Iterator[tuple[str, ...]]:
    """Scalar values of tool-call arguments, raw or JSON-escaped as templates write them."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            yield (arguments,)
            return
    if isinstance(arguments, dict):
        arguments = list(arguments.values())
    if isinstance(arguments, list):
        for value in arguments:
            yield from _leaves(value if not isinstance(value, str) else json.dumps(value))
    elif isinstance(arguments, str):
        yield arguments, json.dumps(arguments, ensure_ascii=False)[1:-1]
    elif arguments is not None:
        yield (json.dumps(arguments), str(arguments))


def _rstrip(text: str, end: int) -> int:
    """`end` moved back over whitespace: the next turn's formatting, not the model's output."""
    return len(text[:end].rstrip())
