"""Token ids and the character range of each token, for masking by character spans.

The tokenizer's own offsets (`return_offsets_mapping`) are the reference. Tracking them
costs the Rust tokenizer about a quarter of its time, and masking only looks up the
tokens at each graded span's edges, so for the tokenizers where offsets follow from the
ids alone they are computed from the ids instead:

- a transformers fast tokenizer whose class adds nothing to the Rust tokenizer's call,
  which is byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM: every token is a fixed byte
  string, added tokens are their content) with no normalizer, no prefix space, no
  offset trimming, no byte fallback and no added token that swallows whitespace, whose
  tokens therefore tile the text: token t covers [c_t, c_t + length_t) where c_t is the
  sum of the lengths before it;
- and a text that is ASCII (bytes are characters) and whose token lengths add up to its
  length (checked per text).

Anything else, a text or a tokenizer, goes through the tokenizer's offsets, so the ids and
labels are the same either way (tests/trainer/test_offsets.py compares both).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import weakref
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, overload

Span = tuple[int, int]
_start, _end = itemgetter(0), itemgetter(1)

_LENGTHS: weakref.WeakKeyDictionary[Any, tuple[int, list[int]]] = weakref.WeakKeyDictionary()
"""Per tokenizer: (its vocabulary size, the length of each token id) (see `_token_lengths`)."""


def encode_with_offsets(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], Sequence[Span]]]:
    """Token ids (no special tokens added) and character offsets of each text, the
    offsets read lazily; raises ValueError for a tokenizer that has no offsets (slow)."""
    lengths = _token_lengths(tokenizer)
    out: list[tuple[list[int], Sequence[Span]] | None] = [None] * len(texts)
    if lengths is not None:
        ascii_texts = [i for i, text in enumerate(texts) if text.isascii()]
        encoded = tokenizer.backend_tokenizer.encode_batch_fast(
            [texts[i] for i in ascii_texts], add_special_tokens=False
        )
        for i, encoding in zip(ascii_texts, encoded, strict=True):
            ids = encoding.ids
            starts = list(itertools.accumulate(map(lengths.__getitem__, ids), initial=0))
            if starts[-1] == len(texts[i]):
                out[i] = (ids, _Tiling(starts))
    rest = [i for i, done in enumerate(out) if done is None]
    if rest:
        encoded_rest = _tokenizer_offsets(tokenizer, [texts[i] for i in rest])
        for i, pair in zip(rest, encoded_rest, strict=True):
            out[i] = pair
    return [pair for pair in out if pair is not None]


def _tokenizer_offsets(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], Sequence[Span]]]:
    """Ids from the tokenizer's call and offsets from its (Rust) encodings, read when asked
    for: converting every token's pair to Python, as `return_offsets_mapping` does, cost
    about a tenth of data preparation."""
    encoding = tokenizer(
        texts,
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    encodings = getattr(encoding, "encodings", None)
    if encodings is None:
        raise ValueError(
            "masking chat examples needs a tokenizer that returns offsets (a fast tokenizer); "
            f"{type(tokenizer).__name__} does not"
        )
    return [
        (ids, _EncodingOffsets(encoded))
        for ids, encoded in zip(encoding["input_ids"], encodings, strict=True)
    ]


def token_range(offsets: Sequence[Span], start: int, end: int) -> tuple[int, int]:
    """(first, last): the tokens first..last-1 are those whose offsets overlap [start, end).

    Offsets run forward through the text (starts and ends never decrease), so that is the
    run from the first token ending after `start` to the last starting before `end`: two
    binary searches, over the token starts themselves where they tile the text.
    """
    if isinstance(offsets, _Tiling):
        starts = offsets.starts
        return bisect.bisect_right(starts, start) - 1, min(
            bisect.bisect_left(starts, end), len(offsets)
        )
    return bisect.bisect_right(offsets, start, key=_end), bisect.bisect_left(
        offsets, end, key=_start
    )


class _Offsets(Sequence[Span]):
    """(start, end) characters of each token; subclasses say where they come from."""

    _length: int

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Span: ...

    @overload
    def __getitem__(self, index: slice) -> list[Span]: ...

    def __getitem__(self, index: int | slice) -> Span | list[Span]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self._span(index % self._length)

    def _span(self, index: int) -> Span:
        raise NotImplementedError


class _EncodingOffsets(_Offsets):
    """Offsets of one `tokenizers.Encoding`, read from it on demand."""

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding
        self._length = len(encoding)

    def _span(self, index: int) -> Span:
        start, end = self._encoding.token_to_chars(index)
        return int(start), int(end)


class _Tiling(_Offsets):
    """Offsets of tokens that tile the text: `starts` holds each token's start, then the end."""

    def __init__(self, starts: list[int]) -> None:
        self.starts = starts
        self._length = len(starts) - 1

    def _span(self, index: int) -> Span:
        return self.starts[index], self.starts[index + 1]


def _token_lengths(tokenizer: Any) -> list[int] | None:
    """Characters per token id when the module docstring's tokenizer conditions hold,
    else None. The table is built once per tokenizer and vocabulary size."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not _tiles_text(tokenizer, backend):
        return None
    size = backend.get_vocab_size(with_added_tokens=True)
    cached = _LENGTHS.get(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    lengths = [0] * size
    for token, index in backend.get_vocab(with_added_tokens=True).items():
        if index < size:
            lengths[index] = len(token)
    with contextlib.suppress(TypeError):  # not weakly referenceable: built each time
        _LENGTHS[tokenizer] = (size, lengths)
    return lengths


def _tiles_text(tokenizer: Any, backend: Any) -> bool:
    """Whether the tokenizer's tokens tile an ASCII text with their vocabulary lengths."""
    from tokenizers import models, pre_tokenizers, processors

    if not _plain_fast_tokenizer(tokenizer):
        return False
    if not hasattr(backend, "encode_batch_fast") or backend.normalizer is not None:
        return False
    if backend.truncation is not None or backend.padding is not None:
        return False
    if bool(backend.encode_special_tokens) != bool(
        getattr(tokenizer, "split_special_tokens", False)
    ):
        return False
    model = backend.model
    if not isinstance(model, models.BPE) or model.byte_fallback or model.dropout:
        return False
    steps = _members(backend.pre_tokenizer, pre_tokenizers.Sequence)
    if not any(isinstance(step, pre_tokenizers.ByteLevel) for step in steps):
        return False
    for step in steps:
        if isinstance(step, pre_tokenizers.ByteLevel) and step.add_prefix_space:
            return False
        if not isinstance(step, (pre_tokenizers.ByteLevel, pre_tokenizers.Split)):
            return False
    for step in _members(backend.post_processor, processors.Sequence):
        if isinstance(step, processors.ByteLevel) and step.trim_offsets:
            return False
        if not isinstance(step, (processors.ByteLevel, processors.TemplateProcessing)):
            return False
    added = backend.get_added_tokens_decoder().values()
    return not any(token.lstrip or token.rstrip for token in added)


def _plain_fast_tokenizer(tokenizer: Any) -> bool:
    """A transformers fast tokenizer that encodes through the Rust tokenizer as it is: no
    class of its own that changes the text or the call (CodeLlama, LayoutLM, ...)."""
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return False
    names = (
        *("__call__", "_call_one", "_encode_plus", "_batch_encode_plus", "encode_plus"),
        *("batch_encode_plus", "prepare_for_tokenization", "tokenize"),
    )
    return all(
        getattr(type(tokenizer), name, None) is getattr(PreTrainedTokenizerFast, name, None)
        for name in names
    )


def _members(step: Any, sequence: type[Any]) -> list[Any]:
    """The steps of a pre-tokenizer or post-processor, a Sequence unrolled (None: none)."""
    if step is None:
        return []
    if not isinstance(step, sequence):
        return [step]
    members = []
    for index in itertools.count():
        try:
            members.append(step[index])
        except IndexError:
            return members
    return members
