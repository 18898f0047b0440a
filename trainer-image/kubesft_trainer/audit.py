"""The data audit of `prepare`: near-duplicates, contradictions, short answers, length outliers.

Quality over quantity (LIMA): exact duplicates are removed while reading; what passes that
is audited here over the normalized examples. Each category is reported with a count and
the first source rows in `status.stats.audit` and `stats.json`, and `spec.validation` says
per category whether to keep (warn), drop, or fail. Written here rather than taken from a
library: the rules are a few lines over kubesft's own normalized shape, and the dedupe
libraries (MinHash, embeddings) answer a fuzzier question than "same up to whitespace and
case".
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import Any, NamedTuple, Protocol, TypeVar

from kubesft.api.dataset import AuditFinding, DataAudit, Validation
from kubesft_trainer.exit_codes import UserError

SHOWN_ROWS = 5
"""Row numbers kept per category, so the status and termination message stay small."""
MIN_OUTLIER_EXAMPLES = 10
"""Fewest examples over which a length can be called an outlier."""
MAD_SCALE = 0.6745
"""Modified z-score: 0.6745 (x - median) / MAD (Iglewicz and Hoaglin, 1993)."""
MEAN_AD_SCALE = 0.7979
"""When MAD is 0, (x - median) / (1.253314 * meanAD), as in IBM SPSS's modified z-score."""
CATEGORIES = {
    "near_duplicates": ("nearDuplicates", "near-duplicate examples"),
    "contradictions": ("contradictions", "contradicting examples"),
    "short_answers": ("shortAnswers", "examples with a short answer"),
    "length_outliers": ("lengthOutliers", "length outliers"),
}
"""Category: its spec.validation field and how a message names it."""
_SPACE = re.compile(r"\s+")
log = logging.getLogger(__name__)


class Audited(Protocol):
    """An example as far as the audit goes: its source row, canonical JSON and length."""

    @property
    def row(self) -> int: ...

    @property
    def line(self) -> str: ...

    @property
    def chars(self) -> int: ...


Ex = TypeVar("Ex", bound=Audited)


@dataclass
class _Flags:
    """Indexes (into the audited list) flagged per category."""

    by_category: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    bounds: tuple[int, int] | None = None


class _Keys(NamedTuple):
    """What the rules compare of one example: digests of folded text, so a large dataset
    costs a few dozen bytes per example here rather than a second parsed copy."""

    whole: bytes
    prompt: bytes | None
    """None for a `text` example, which has no prompt or answer."""
    answer: bytes
    answer_words: int


def _keys(example: Mapping[str, Any]) -> _Keys:
    prompt, answer = split_example(example)
    is_text = "text" in example
    return _Keys(
        whole=_digest(fold(prompt + "\n" + answer)),
        prompt=None if is_text else _digest(fold(prompt)),
        answer=_digest(fold(answer)),
        answer_words=len(answer.split()),
    )


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def audit_examples(examples: Sequence[Ex], validation: Validation) -> tuple[list[Ex], DataAudit]:
    """Audit `examples` (in source order); returns those kept and the findings.

    Examples flagged in a category set to `drop` are removed; `warn` and `fail` keep them
    (`enforce_audit` raises for `fail`, after the findings are recorded).
    """
    flags = _Flags()
    keys = [_keys(json.loads(ex.line)) for ex in examples]
    _near_duplicates(keys, flags)
    _contradictions(keys, flags)
    _short_answers(keys, validation.min_answer_words, flags)
    flags.bounds = _length_outliers([ex.chars for ex in examples], validation, flags)
    drop: set[int] = set()
    findings: dict[str, AuditFinding] = {}
    for name in CATEGORIES:
        action: str = getattr(validation, name)
        indexes = sorted(set(flags.by_category[name]))
        if action == "drop":
            drop.update(indexes)
        findings[name] = AuditFinding(
            count=len(indexes),
            rows=[examples[i].row for i in indexes[:SHOWN_ROWS]],
            action=action,
        )
    low, high = flags.bounds or (None, None)
    audit = DataAudit(**findings, min_chars=low, max_chars=high, dropped=len(drop))
    return [ex for i, ex in enumerate(examples) if i not in drop], audit


def enforce_audit(audit: DataAudit) -> None:
    """Raise UserError naming each category set to `fail` that flagged examples."""
    problems = []
    for name in CATEGORIES:
        finding: AuditFinding = getattr(audit, name)
        if finding.action == "fail" and finding.count:
            problems.append(
                f"{describe_finding(name, finding)}, set it to drop or warn or fix the data"
            )
    if problems:
        raise UserError("data audit failed: " + "; ".join(problems))


def log_audit(audit: DataAudit | None) -> None:
    """One warning per category that flagged examples, for a dataset that was prepared (a
    rejected one says only why it was rejected)."""
    for name in CATEGORIES:
        finding: AuditFinding | None = getattr(audit, name, None)
        if finding is not None and finding.count:
            verb = "dropped" if finding.action == "drop" else "kept"
            log.warning("data audit: %s, %s", describe_finding(name, finding), verb)


def describe_finding(name: str, finding: AuditFinding) -> str:
    """`3 near-duplicate examples (rows 4, 9, 12; spec.validation.nearDuplicates is warn)`."""
    knob, label = CATEGORIES[name]
    rows = ", ".join(str(r) for r in finding.rows)
    more = " and more" if finding.count > len(finding.rows) else ""
    return (
        f"{finding.count} {label} (rows {rows}{more}; spec.validation.{knob} is {finding.action})"
    )


def _near_duplicates(keys: Sequence[_Keys], flags: _Flags) -> None:
    """Flag each example whose whole text equals an earlier one's up to whitespace and case."""
    seen: set[bytes] = set()
    for i, key in enumerate(keys):
        if key.whole in seen:
            flags.by_category["near_duplicates"].append(i)
        seen.add(key.whole)


def _contradictions(keys: Sequence[_Keys], flags: _Flags) -> None:
    """Flag every example whose prompt also appears with a different answer (up to
    whitespace and case); text examples have no prompt and are never flagged."""
    answers: dict[bytes, dict[bytes, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, key in enumerate(keys):
        if key.prompt is not None:
            answers[key.prompt][key.answer].append(i)
    for by_answer in answers.values():
        if len(by_answer) > 1:
            flags.by_category["contradictions"].extend(
                i for rows in by_answer.values() for i in rows
            )


def _short_answers(keys: Sequence[_Keys], min_words: int, flags: _Flags) -> None:
    """Flag examples whose final answer has fewer than `min_words` whitespace-separated words."""
    for i, key in enumerate(keys):
        if key.prompt is not None and key.answer_words < min_words:
            flags.by_category["short_answers"].append(i)


def _length_outliers(
    lengths: Sequence[int], validation: Validation, flags: _Flags
) -> tuple[int, int] | None:
    """Flag lengths whose modified z-score of log(1 + chars) exceeds maxLengthScore; returns
    the (min, max) characters that are not outliers, or None below MIN_OUTLIER_EXAMPLES.

    Log scale because lengths are right-skewed (a few long documents are normal, a
    three-character one among essays is not); median and MAD so the outliers being sought
    cannot hide by inflating the spread, as they would with mean and standard deviation.
    """
    if len(lengths) < MIN_OUTLIER_EXAMPLES:
        return None
    logs = [math.log1p(n) for n in lengths]
    center = median(logs)
    mad = median(abs(x - center) for x in logs)
    spread = mad / MAD_SCALE if mad > 0 else fmean(abs(x - center) for x in logs) / MEAN_AD_SCALE
    if spread == 0:
        return (lengths[0], lengths[0])  # all the same length: nothing stands out
    reach = validation.max_length_score * spread
    low, high = math.expm1(center - reach), math.expm1(center + reach)
    for i, n in enumerate(lengths):
        if not low <= n <= high:
            flags.by_category["length_outliers"].append(i)
    return max(0, math.ceil(low)), math.floor(high)


def split_example(example: Mapping[str, Any]) -> tuple[str, str]:
    """(prompt, answer) texts of a normalized example: the answer is the final assistant
    turn (content and tool calls), the prompt everything before it (with any tools); a
    `text` example is all prompt and has no answer."""
    if "text" in example:
        return str(example["text"]), ""
    if "messages" in example:
        turns = list(example["messages"])
        last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=-1)
        before = [example.get("tools") or "", *turns[:last]] if last >= 0 else turns
        return flatten(before), flatten(_answer(turns[last])) if last >= 0 else ""
    return flatten([example.get("tools") or "", example.get("prompt")]), flatten(
        example.get("completion")
    )


def _answer(turn: Mapping[str, Any]) -> list[Any]:
    return [turn.get("content") or "", turn.get("tool_calls") or ""]


def flatten(value: Any) -> str:
    """Every non-empty string inside a JSON value, in order, one per line (dict keys sorted;
    a turn's loss `weight` is not text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        parts = [flatten(value[k]) for k in sorted(value) if k != "weight"]
    elif isinstance(value, list):
        parts = [flatten(v) for v in value]
    else:
        return "" if value is None else str(value)
    return "\n".join(p for p in parts if p)


def fold(text: str) -> str:
    """`text` up to whitespace and case: runs of whitespace as one space, casefolded."""
    return _SPACE.sub(" ", text).strip().casefold()
