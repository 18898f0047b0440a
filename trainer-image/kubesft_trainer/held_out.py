"""Held-out score: greedy answers to eval prompts against the eval rows' reference answers.

Loss and token accuracy say how close the model's distribution is; for a task with one
right answer (a fixed format, an extraction into JSON) a user asks whether the answer is
right. Exact match after whitespace normalization is the usual measure for that
(SQuAD's EM; lm-evaluation-harness `exact_match`); when the references are JSON objects,
"format-valid" also counts answers that parse as an object with the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubesft.api.held_out import HeldOutScore


def normalize(text: str) -> str:
    """Runs of whitespace as one space, trimmed: layout is not what is being judged."""
    return " ".join(text.split())


def exact_match_rate(answers: Sequence[str], references: Sequence[str]) -> float:
    """Share (0-1) of answers equal to their reference after `normalize`."""
    pairs = list(zip(answers, references, strict=True))
    return sum(normalize(a) == normalize(r) for a, r in pairs) / len(pairs) if pairs else 0.0


def format_valid_rate(answers: Sequence[str], references: Sequence[str]) -> float | None:
    """Share (0-1) of answers that parse as a JSON object with their reference's keys;
    None unless every reference is a JSON object (the format is only known then)."""
    keys = [_object_keys(r) for r in references]
    if not keys or any(k is None for k in keys):
        return None
    pairs = list(zip(answers, keys, strict=True))
    return sum(_object_keys(a) == k for a, k in pairs) / len(pairs)


def held_out_score(
    before: Sequence[str], after: Sequence[str], references: Sequence[str]
) -> HeldOutScore | None:
    """The `evaluation.heldOut` status field, or None when there is nothing to score (no
    references, or answers missing on a resumed run)."""
    if not references or len(before) != len(references) or len(after) != len(references):
        return None
    score: dict[str, Any] = {
        "examples": len(references),
        "exactMatchBefore": round(exact_match_rate(before, references), 4),
        "exactMatchAfter": round(exact_match_rate(after, references), 4),
    }
    valid_before = format_valid_rate(before, references)
    if valid_before is not None:
        score["formatValidBefore"] = round(valid_before, 4)
        score["formatValidAfter"] = round(format_valid_rate(after, references) or 0.0, 4)
    return HeldOutScore.model_validate(score)


def describe_score(score: HeldOutScore) -> str:
    """One line for the log: `held-out (16 rows): exact match 0% -> 81%, ...`."""
    line = f"held-out ({score.examples} rows): exact match "
    line += f"{score.exact_match_before:.0%} -> {score.exact_match_after:.0%}"
    if score.format_valid_before is not None and score.format_valid_after is not None:
        line += f", valid JSON {score.format_valid_before:.0%} -> {score.format_valid_after:.0%}"
    return line


def _object_keys(text: str) -> frozenset[str] | None:
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return None
    return frozenset(value) if isinstance(value, dict) else None
