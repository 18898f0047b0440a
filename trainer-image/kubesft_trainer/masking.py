"""Turn one normalized example into `input_ids` and `labels` (-100 = not graded).

`turns.render_graded` renders a conversation and finds the characters each assistant turn
writes (from `{% generation %}` markers or the template's structure; one conversation may
become one text per turn where a template re-renders history). The text is tokenized once
and character spans map to tokens through offsets, the same way transformers builds
`assistant_masks`. `tokenize_examples` encodes many texts in one tokenizer call (a fast
tokenizer spreads a batch over the CPU cores); `tokenize_example` is the same code for one
example, so both give identical ids and labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubesft_trainer.offsets import encode_with_offsets, token_range
from kubesft_trainer.turns import GradedText, render_graded

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
    full_length: int | None = None
    """Tokens before truncation (None: not truncated by `_truncate`, the length is len)."""

    @property
    def untruncated_length(self) -> int:
        return len(self.input_ids) if self.full_length is None else self.full_length

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
    `assistant` means the same as `completion`. Raises ValueError for a conversation the
    template turns into several examples (one per turn): `tokenize_examples` returns them.
    """
    (examples,) = tokenize_examples(
        [example],
        tokenizer,
        loss_on=loss_on,
        max_seq_length=max_seq_length,
        chat_template=chat_template,
    )
    if len(examples) != 1:
        raise ValueError(f"the example becomes {len(examples)} examples; use tokenize_examples")
    return examples[0]


def tokenize_examples(
    examples: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    loss_on: LossOn,
    max_seq_length: int,
    chat_template: str | None = None,
) -> list[list[TokenizedExample]]:
    """The tokenized examples of each input example, in order; chat texts are encoded in one
    batched call. An input gives several examples when its conversation is trained one
    assistant turn per example (see `turns`).

    A ValueError names the problem but not the example; callers that need the row run
    `tokenize_examples` row by row to find it.
    """
    rendered = render_examples(
        examples,
        tokenizer,
        loss_on=loss_on,
        max_seq_length=max_seq_length,
        chat_template=chat_template,
    )
    return label_encoded(encode_rendered(rendered, tokenizer))


@dataclass(frozen=True)
class RenderedExamples:
    """Examples up to the tokenizer: chat texts rendered with their graded spans, the
    others as given. Only `encode_rendered` calls the tokenizer, and it runs no other
    Python to speak of, so one thread can render and label while another encodes."""

    count: int
    chats: list[tuple[int, GradedText]]
    """(index of the input example, one text to train on)."""
    others: dict[int, Mapping[str, Any]]
    """Prompt/completion strings and `text` examples, by index."""
    loss_on: LossOn
    max_seq_length: int


def render_examples(
    examples: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    loss_on: LossOn,
    max_seq_length: int,
    chat_template: str | None = None,
) -> RenderedExamples:
    """The first half of `tokenize_examples`: check each example and render its chat.

    Reads only the tokenizer's special tokens. Raises ValueError as `tokenize_examples`.
    """
    if loss_on not in LOSS_ON:
        raise ValueError(
            f"spec.training.lossOn must be one of {', '.join(LOSS_ON)} (got {loss_on!r})"
        )
    if max_seq_length < 2:
        raise ValueError(f"spec.training.maxSeqLength must be >= 2 (got {max_seq_length})")
    chats: list[tuple[int, GradedText]] = []
    others: dict[int, Mapping[str, Any]] = {}
    for index, example in enumerate(examples):
        conversation = conversation_of(example, loss_on)
        if conversation is not None:
            if chat_template is None:
                raise ValueError("a chat template is required to tokenize a messages example")
            messages, turn_loss = conversation
            _check_messages(messages)
            texts = render_graded(
                messages, chat_template, tokenizer, turn_loss, example.get("tools")
            )
            chats.extend((index, text) for text in texts)
        elif ("prompt" in example and "completion" in example) or "text" in example:
            others[index] = example
        else:
            raise ValueError(
                "an example needs 'messages', 'prompt' and 'completion', or 'text' "
                f"(got keys {sorted(example)})"
            )
    return RenderedExamples(len(examples), chats, others, loss_on, max_seq_length)


@dataclass(frozen=True)
class EncodedExamples:
    """`RenderedExamples` with their token ids (and offsets) and no labels yet."""

    rendered: RenderedExamples
    chats: list[tuple[list[int], Sequence[Span]]]
    """Ids and character offsets of each chat text, in the order of `rendered.chats`."""
    others: dict[int, tuple[list[int], list[int]]]
    """Ids and labels of the other examples, by index."""


def encode_rendered(rendered: RenderedExamples, tokenizer: Any) -> EncodedExamples:
    """The second step of `tokenize_examples`: every tokenizer call, chats in one batch.

    Raises ValueError for a tokenizer without offsets (chats) or an eos (prompt/completion,
    text).
    """
    others: dict[int, tuple[list[int], list[int]]] = {}
    for index, example in rendered.others.items():
        if "prompt" in example and "completion" in example:
            prompt, completion = str(example["prompt"]), str(example["completion"])
            others[index] = _tokenize_prompt_completion(
                prompt, completion, tokenizer, rendered.loss_on
            )
        else:
            raw = str(example["text"])
            ids = _bos_ids(tokenizer) + _encode(tokenizer, raw) + [_eos_id(tokenizer)]
            others[index] = (ids, list(ids))
    texts = [text.text for _, text in rendered.chats]
    chats = encode_with_offsets(tokenizer, texts) if texts else []
    return EncodedExamples(rendered, chats, others)


def label_encoded(encoded: EncodedExamples) -> list[list[TokenizedExample]]:
    """The last step of `tokenize_examples`: labels from the graded spans, truncation."""
    rendered = encoded.rendered
    tokenized = {index: [pair] for index, pair in encoded.others.items()}
    for (index, text), (ids, offsets) in zip(rendered.chats, encoded.chats, strict=True):
        tokenized.setdefault(index, []).append((ids, labels_from_spans(ids, offsets, text.spans)))
    return [
        [_truncate(ids, labels, rendered.max_seq_length) for ids, labels in tokenized[index]]
        for index in range(rendered.count)
    ]


def conversation_of(
    example: Mapping[str, Any], loss_on: LossOn
) -> tuple[list[Mapping[str, Any]], LossOn] | None:
    """The messages to render and how to grade them, or None for a non-chat example.

    Conversational prompt/completion (lists of messages, TRL's format) is one conversation
    whose prompt turns are never graded: its assistant turns get `weight: 0`.
    """
    if "messages" in example:
        return list(example["messages"]), loss_on
    prompt, completion = example.get("prompt"), example.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        if loss_on == "all":
            return [*prompt, *completion], loss_on
        context = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in prompt]
        return [*context, *completion], "assistant"
    return None


def _truncate(ids: list[int], labels: list[int], max_seq_length: int) -> TokenizedExample:
    """Keep the head so the prompt's start survives; flag examples left with nothing to grade."""
    full_length = len(ids)
    truncated = full_length > max_seq_length
    ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    if labels:
        # Nothing precedes the first token, so no logit can predict it.
        labels[0] = IGNORE_INDEX
    dropped = labels.count(IGNORE_INDEX) == len(labels)
    return TokenizedExample(
        ids, labels, truncated=truncated, dropped=dropped, full_length=full_length
    )


def _tokenize_prompt_completion(
    prompt: str, completion: str, tokenizer: Any, loss_on: LossOn
) -> tuple[list[int], list[int]]:
    """Prompt and completion are encoded apart, as at inference where generation starts fresh."""
    prompt_ids = _bos_ids(tokenizer) + _encode(tokenizer, prompt)
    completion_ids = [*_encode(tokenizer, completion), _eos_id(tokenizer)]
    prompt_labels = list(prompt_ids) if loss_on == "all" else [IGNORE_INDEX] * len(prompt_ids)
    return prompt_ids + completion_ids, prompt_labels + list(completion_ids)


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    if not messages:
        raise ValueError("messages must not be empty")
    for index, message in enumerate(messages):
        if message.get("content") is None and message.get("tool_calls"):
            continue
        if not isinstance(message.get("content"), str):
            raise ValueError(
                f"messages[{index}].content must be a string "
                f"(got {type(message.get('content')).__name__})"
            )


def labels_from_spans(
    ids: Sequence[int], offsets: Sequence[Span], spans: Sequence[Span]
) -> list[int]:
    """Grade each token whose character range overlaps a graded span; the rest get -100.

    Overlap is strict, so zero-width offsets (whitespace trimmed by some byte-level
    tokenizers) at a span's edge stay with the neighbouring ungraded text. The tokens of a
    span are found by two binary searches (`offsets.token_range`), whatever its length.
    """
    labels = [IGNORE_INDEX] * len(ids)
    for span_start, span_end in spans:
        first, last = token_range(offsets, span_start, span_end)
        if last > first:
            labels[first:last] = ids[first:last]
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
