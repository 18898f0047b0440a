"""Synthetic chat data with a realistic length mix, shared by the CPU benchmarks.

Real SFT sets (ShareGPT, UltraChat, Tulu) have heavy-tailed message lengths and mostly
one to three exchanges, so: the number of exchanges is 1 + a geometric draw (mean ~1.8),
a system prompt appears in 30% of conversations, and message lengths in words are
log-normal (user median 25, assistant median 60; sigma ~1). Words come from a fixed
pseudo-vocabulary with a Zipf frequency profile, so a BPE trained on the text behaves
like one trained on natural language (frequent words become single tokens). The same
seed gives the same conversations, on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SYLLABLES = (
    *("ka", "to", "ri", "an", "el", "mo", "su", "ve", "di", "la", "po", "ne", "shi", "gra"),
    *("tor", "ble", "ing", "ex", "com", "pre", "ter", "al", "ic", "ous", "ment", "er", "st"),
)


@dataclass(frozen=True)
class LengthMix:
    """Parameters of the length distributions (words per message)."""

    user_median: float = 25.0
    user_sigma: float = 1.0
    assistant_median: float = 60.0
    assistant_sigma: float = 0.9
    system_median: float = 20.0
    system_sigma: float = 0.6
    system_share: float = 0.3
    extra_exchange_p: float = 0.55
    """Success probability of the geometric draw of extra exchanges (mean 1/p - 1)."""
    max_exchanges: int = 6
    max_words: int = 3000


def vocabulary(size: int = 4000, seed: int = 1234) -> list[str]:
    """Distinct pronounceable words, 1 to 4 syllables, in a fixed order."""
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < size:
        count = int(rng.integers(1, 5))
        words["".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), count))] = None
    return list(words)


def make_conversations(
    count: int, seed: int = 0, mix: LengthMix = LengthMix()
) -> list[dict[str, Any]]:
    """`count` rows `{"messages": [...]}`, each ending with an assistant turn."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary(), dtype=object)
    zipf = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    cdf = np.cumsum(zipf / zipf.sum())

    def text(median: float, sigma: float) -> str:
        n = int(np.clip(round(rng.lognormal(np.log(median), sigma)), 1, mix.max_words))
        picks = words[np.minimum(np.searchsorted(cdf, rng.random(n)), len(words) - 1)]
        # Sentences of 5+ words; 80% end with ".", the rest "?"; 10% end a paragraph.
        ends = np.minimum(np.cumsum(4 + rng.geometric(0.12, size=n // 4 + 1)), n)
        marks = rng.random(len(ends))
        sentences, start = [], 0
        for end, mark in zip(ends.tolist(), marks.tolist(), strict=True):
            if start >= n:
                break
            sentence = " ".join(picks[start:end])
            stop = ("." if mark < 0.8 else "?") + ("\n" if mark > 0.9 else " ")
            sentences.append(sentence[0].upper() + sentence[1:] + stop)
            start = end
        return "".join(sentences).strip()

    rows = []
    for _ in range(count):
        messages = []
        if rng.random() < mix.system_share:
            messages.append(
                {"role": "system", "content": text(mix.system_median, mix.system_sigma)}
            )
        exchanges = min(int(rng.geometric(mix.extra_exchange_p)), mix.max_exchanges)
        for _ in range(exchanges):
            messages.append({"role": "user", "content": text(mix.user_median, mix.user_sigma)})
            messages.append(
                {
                    "role": "assistant",
                    "content": text(mix.assistant_median, mix.assistant_sigma),
                }
            )
        rows.append({"messages": messages})
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
