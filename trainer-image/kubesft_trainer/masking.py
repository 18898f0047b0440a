"""Turn one normalized example into `input_ids` and `labels` (-100 = not graded).

Assistant turns are located without `{% generation %}` markers: render the conversation
up to each turn (with and without the generation prompt), require every shorter rendering
to be a prefix of the longer one, and grade the characters an assistant turn adds. The
full text is tokenized once and character spans map to tokens through offsets, the same
way transformers builds `assistant_masks`.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jinja2

from kubesft_trainer.chat_template import render_conversation, template_name

IGNORE_INDEX = -100
LossOn = Literal["assistant", "completion", "all"]
LOSS_ON = ("assistant", "completion", "all")

Span = tuple[int, int]


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels of one example; `dropped` means nothing is left to grade."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    dropped: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_graded(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def tokenize_example(
    example: Mapping[str, Any],
    tokenizer: Any,
    *,
    loss_on: LossOn,
    max_seq_length: int,
    chat_template: str | None = None,
) -> TokenizedExample:
    """Tokenize a `messages`, `prompt`/`completion` or `text` example and mask its labels.

    `text` has no prompt, so it is graded whole under every `loss_on`; for prompt/completion
    `assistant` means the same as `completion`.
    """
    if loss_on not in LOSS_ON:
        raise ValueError(
            f"spec.training.lossOn must be one of {', '.join(LOSS_ON)} (got {loss_on!r})"
        )
    if max_seq_length < 2:
        raise ValueError(f"spec.training.maxSeqLength must be >= 2 (got {max_seq_length})")
    if "messages" in example:
        if chat_template is None:
            raise ValueError("a chat template is required to tokenize a messages example")
        ids, labels = _tokenize_messages(example["messages"], chat_template, tokenizer, loss_on)
    elif "prompt" in example and "completion" in example:
        ids, labels = _tokenize_prompt_completion(
            str(example["prompt"]), str(example["completion"]), tokenizer, loss_on
        )
    elif "text" in example:
        ids = _bos_ids(tokenizer) + _encode(tokenizer, str(example["text"])) + [_eos_id(tokenizer)]
        labels = list(ids)
    else:
        raise ValueError(
            "an example needs 'messages', 'prompt' and 'completion', or 'text' "
            f"(got keys {sorted(example)})"
        )
    return _truncate(ids, labels, max_seq_length)


def _truncate(ids: list[int], labels: list[int], max_seq_length: int) -> TokenizedExample:
    """Keep the head so the prompt's start survives; flag examples left with nothing to grade."""
    truncated = len(ids) > max_seq_length
    ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    if labels:
        # Nothing precedes the first token, so no logit can predict it.
        labels[0] = IGNORE_INDEX
    dropped = all(label == IGNORE_INDEX for label in labels)
    return TokenizedExample(ids, labels, truncated=truncated, dropped=dropped)


def _tokenize_prompt_completion(
    prompt: str, completion: str, tokenizer: Any, loss_on: LossOn
) -> tuple[list[int], list[int]]:
    """Prompt and completion are encoded apart, as at inference where generation starts fresh."""
    prompt_ids = _bos_ids(tokenizer) + _encode(tokenizer, prompt)
    completion_ids = [*_encode(tokenizer, completion), _eos_id(tokenizer)]
    prompt_labels = list(prompt_ids) if loss_on == "all" else [IGNORE_INDEX] * len(prompt_ids)
    return prompt_ids + completion_ids, prompt_labels + list(completion_ids)


def _tokenize_messages(
    messages: Sequence[Mapping[str, Any]], template: str, tokenizer: Any, loss_on: LossOn
) -> tuple[list[int], list[int]]:
    _check_messages(messages)
    text, spans = graded_spans(messages, template, tokenizer, loss_on)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    offsets = encoding.get("offset_mapping")
    if offsets is None:
        raise ValueError(
            "masking chat examples needs a tokenizer that returns offsets (a fast tokenizer); "
            f"{type(tokenizer).__name__} does not"
        )
    return ids, labels_from_spans(ids, [tuple(o) for o in offsets], spans)


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    if not messages:
        raise ValueError("messages must not be empty")
    for index, message in enumerate(messages):
        if not isinstance(message.get("content"), str):
            raise ValueError(
                f"messages[{index}].content must be a string "
                f"(got {type(message.get('content')).__name__})"
            )


def graded_spans(
    messages: Sequence[Mapping[str, Any]], template: str, tokenizer: Any, loss_on: LossOn
) -> tuple[str, list[Span]]:
    """Rendered conversation and the character spans whose tokens are graded."""

    def render(upto: int, add_generation_prompt: bool = False) -> str:
        try:
            return render_conversation(
                messages[:upto], template, tokenizer, add_generation_prompt=add_generation_prompt
            )
        except jinja2.TemplateError as error:
            name = template_name(template)
            raise ValueError(
                f"chat template {name} failed to render messages[:{upto}]: {error}"
            ) from error

    prefixes = [render(upto) for upto in range(1, len(messages) + 1)]
    text = prefixes[-1]
    if loss_on == "all":
        return text, [(0, len(text))]
    for upto in range(1, len(prefixes)):
        if not prefixes[upto].startswith(prefixes[upto - 1]):
            raise _prefix_error(template, f"messages[:{upto}]", f"messages[:{upto + 1}]")

    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if loss_on == "completion":
        turns = turns[-1:]
    spans = []
    for turn in turns:
        turn_text = prefixes[turn]
        before = prefixes[turn - 1] if turn > 0 else render(0)
        prompt = render(turn, add_generation_prompt=True)
        if not turn_text.startswith(prompt):
            raise _prefix_error(
                template, f"messages[:{turn}] with add_generation_prompt", f"messages[:{turn + 1}]"
            )
        start = len(prompt)
        if prompt == before:
            # The template ignores add_generation_prompt: skip the header by finding the content.
            start += max(turn_text[start:].find(messages[turn]["content"].strip()), 0)
        # Whitespace after the end-of-turn token is formatting the next turn brings; the model
        # only has to produce the content and the end-of-turn token(s) so it learns to stop.
        end = start + len(turn_text[start:].rstrip())
        if end > start:
            spans.append((start, end))
    return text, spans


def _prefix_error(template: str, shorter: str, longer: str) -> ValueError:
    return ValueError(
        f"chat template {template_name(template)} breaks the prefix property: rendering {shorter} "
        f"is not a prefix of rendering {longer}, so assistant turns cannot be located for "
        "loss masking; set spec.model.chatTemplate to chatml or llama3, or to a template that "
        "renders earlier turns the same whatever follows them"
    )


def labels_from_spans(
    ids: Sequence[int], offsets: Sequence[Span], spans: Sequence[Span]
) -> list[int]:
    """Grade each token whose character range overlaps a graded span; the rest get -100.

    Overlap is strict, so zero-width offsets (whitespace trimmed by some byte-level
    tokenizers) at a span's edge stay with the neighbouring ungraded text.
    """
    starts = [start for start, _ in offsets]
    ends = [end for _, end in offsets]
    labels = [IGNORE_INDEX] * len(ids)
    for span_start, span_end in spans:
        first = bisect.bisect_right(ends, span_start)
        last = bisect.bisect_left(starts, span_end)
        for token in range(first, last):
            if starts[token] < span_end and ends[token] > span_start:
                labels[token] = ids[token]
    return labels


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _bos_ids(tokenizer: Any) -> list[int]:
    """The BOS the tokenizer itself would add, so raw text starts the way the model expects."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    added = list(tokenizer("", add_special_tokens=True)["input_ids"])
    return [bos] if added[:1] == [bos] else []


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError(
            "the tokenizer has no eos_token, so completions cannot teach the model to stop; "
            "use a model whose tokenizer defines one"
        )
    return int(eos)
