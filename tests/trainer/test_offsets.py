"""Token offsets computed from the ids equal the tokenizer's own, or are not used."""

from __future__ import annotations

import random

import pytest
from tokenizers import Regex, pre_tokenizers, processors

from kubesft_trainer import offsets
from kubesft_trainer.masking import labels_from_spans
from tests.support.tiny_model import build_tiny_tokenizer

# Llama 3's pre-tokenizer: a regex split, then byte-level without its own regex.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PIECES = [
    *("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "assistant"),
    *("\n", "\n\n", " ", "  ", "\t", "   \n ", "hello", " world", "123", "4567", "!?"),
    *("'s", "don't", "é", "日本", "\u00a0"),
]


def texts() -> list[str]:
    """Edges masking meets: runs of whitespace, special tokens glued to text, non-ASCII."""
    rng = random.Random(0)
    return ["".join(rng.choices(PIECES, k=rng.randint(1, 30))) for _ in range(400)] + [""]


def tokenizer(kind: str):
    built = build_tiny_tokenizer(trim_offsets=kind == "trim_offsets")
    backend = built.backend_tokenizer
    if kind == "llama3_sequence":
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        backend.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(single="$A")]
        )
    elif kind == "metaspace":
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
    return built


@pytest.mark.parametrize(
    ("kind", "from_ids"),
    [
        ("byte_level", True),
        ("llama3_sequence", True),
        ("trim_offsets", False),  # trimmed offsets do not tile the text
        ("metaspace", False),  # `▁` stands for a space and may be prepended
    ],
)
def test_offsets_equal_the_tokenizers_own(kind: str, from_ids: bool) -> None:
    built = tokenizer(kind)
    assert (offsets._token_lengths(built) is not None) is from_ids
    samples = texts()
    expected = built(samples, add_special_tokens=False, return_offsets_mapping=True)
    got = offsets.encode_with_offsets(built, samples)
    assert [ids for ids, _ in got] == expected["input_ids"]
    assert [list(spans) for _, spans in got] == [
        [tuple(span) for span in spans] for spans in expected["offset_mapping"]
    ]


def test_added_vocabulary_is_seen() -> None:
    """Tokens added after the table was built get their lengths (the table is rebuilt)."""
    built = build_tiny_tokenizer()
    offsets.encode_with_offsets(built, ["warm up the table"])
    built.add_tokens(["<|kubesft_new|>"], special_tokens=True)
    text = "before<|kubesft_new|>after"
    ((ids, spans),) = offsets.encode_with_offsets(built, [text])
    expected = built(text, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == expected["input_ids"]
    assert list(spans) == [tuple(span) for span in expected["offset_mapping"]]


def test_labels_from_either_offsets_agree() -> None:
    """The binary search over tiling token starts grades what the tokenizer's offsets do,
    spans at every kind of edge (inside a token, between tokens, past the end) included."""
    built = tokenizer("byte_level")
    samples = [text for text in texts() if text.isascii() and text]
    rng = random.Random(1)
    computed = offsets.encode_with_offsets(built, samples)
    own = offsets._tokenizer_offsets(built, samples)
    for text, (ids, tiling), (own_ids, own_offsets) in zip(samples, computed, own, strict=True):
        assert ids == own_ids
        for _ in range(5):
            start = rng.randrange(len(text) + 1)
            span = [(start, rng.randrange(start, len(text) + 2))]
            assert labels_from_spans(ids, tiling, span) == labels_from_spans(ids, own_offsets, span)
