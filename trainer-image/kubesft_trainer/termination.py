"""The container termination message: a contract model as compact JSON of at most 4 KiB.

Both `train` and `prepare` end by writing one (`TrainerTermination`,
`PrepareTermination` in `kubesft.api.report`); the operator reads it from the pod status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kubesft.api.report import TERMINATION_MESSAGE_BYTES

log = logging.getLogger(__name__)

SAMPLE_CHARS = (512, 256, 128, 64, 32, 16)
"""Lengths sample texts are cut to, in turn, while a termination message is too big."""
ESSENTIAL_FIELDS = (
    *("truncated", "phase", "reason", "message"),
    *("progress", "metrics", "output", "bestCheckpoint", "stats", "fingerprint"),
)
"""Fields dropped only when nothing else is left to shrink (phase and reason never are)."""
LAST_DROPPED = ("progress", "metrics", "bestCheckpoint", "stats", "output", "fingerprint")
"""Essential fields in the order they go, the least needed first: why it ended and where
the result is stay longest."""
MESSAGE_CHARS = 1024
"""A one-line message is cut to this length; the pod log has the rest."""


def write_termination_message(
    path: str | Path | None, message: BaseModel, limit: int = TERMINATION_MESSAGE_BYTES
) -> bool:
    """Write `message` as compact JSON of at most `limit` bytes; False when it cannot be
    written (no path: not in a container)."""
    if path is None:
        return False
    text = fit_termination_message(message, limit)
    try:
        # Written in place: /dev/termination-log is a mounted file, not a renameable path.
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:  # the summary is a convenience; the output dir is the record
        log.warning("cannot write the termination message to %s: %s", path, err)
        return False
    return True


def fit_termination_message(message: BaseModel, limit: int = TERMINATION_MESSAGE_BYTES) -> str:
    """Compact JSON of `message` (camelCase, unset fields left out), shrunk to at most
    `limit` UTF-8 bytes.

    Too big a message is shrunk in a fixed order: sample texts cut shorter and shorter,
    samples dropped from the end, row errors dropped from the end, the final eval loss per
    dataset when metrics has the latest, the checkpoint list cut to the best one, long
    strings cut, then whole fields dropped, the least useful first. A shrunk message
    carries `"truncated": true`; phase and reason are always kept.
    """
    doc: dict[str, Any] = message.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(doc.get("message"), str):
        doc["message"] = _cut(doc["message"], MESSAGE_CHARS)
    text = _compact(doc)
    if len(text.encode()) <= limit:
        return text
    doc["truncated"] = True
    for _ in _shrink(doc):
        text = _compact(doc)
        if len(text.encode()) <= limit:
            return text
    return text


def _shrink(doc: dict[str, Any]) -> Iterator[None]:
    """Shrink `doc` in place by one step per iteration, the least useful content first."""
    samples: list[dict[str, Any]] = (doc.get("evaluation") or {}).get("samples") or []
    for chars in SAMPLE_CHARS:
        for sample in samples:
            _cut_strings(sample, chars)
        yield
    while samples:
        samples.pop()
        yield
    errors: list[dict[str, Any]] = doc.get("errors") or []
    for error in errors:
        _cut_strings(error, 200)
    while errors:
        errors.pop()
        yield
    evaluation = doc.get("evaluation") or {}
    if evaluation.get("byDataset") and (doc.get("metrics") or {}).get("evalByDataset"):
        del evaluation["byDataset"]  # the last evaluation per dataset stays, in metrics
        yield
    if doc.get("checkpoints"):
        best = doc.get("bestCheckpoint")
        doc["checkpoints"] = [c for c in doc["checkpoints"] if c.get("path") == best]
        yield
    for chars in (1024, 256):
        _cut_strings(doc, chars)
        yield
    for key in sorted(k for k in doc if k not in ESSENTIAL_FIELDS):
        del doc[key]
        yield
    for key in LAST_DROPPED:
        if doc.pop(key, None) is not None:
            yield
    _cut_strings(doc, 64)
    yield
    doc.pop("message", None)
    yield


def _cut_strings(fields: dict[str, Any], chars: int) -> None:
    for key, value in fields.items():
        if isinstance(value, str):
            fields[key] = _cut(value, chars)


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _compact(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
