"""The tracker interface, the fan-out to several trackers, and the scalar names they share."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

TRAIN_SCALARS = {
    "trainLoss": "train/loss",
    "learningRate": "train/learning_rate",
    "gradNorm": "train/grad_norm",
    "tokensPerSecond": "train/tokens_per_second",
    "epoch": "train/epoch",
    "gpuMemoryGiB": "train/gpu_memory_gib",
}
"""metrics.jsonl train fields → scalar names (TensorBoard tags, MLflow metric keys)."""
NOT_SCALARS = frozenset({"type", "step", "totalSteps", "etaSeconds", "tokens", "time"})


class Tracker(Protocol):
    """One experiment tracker, fed the records of metrics.jsonl as they are written."""

    def record(self, record: Mapping[str, Any]) -> None:
        """One metrics.jsonl record (train step, eval or checkpoint)."""

    def finish(self, output_dir: Path, final: Mapping[str, Any]) -> None:
        """The run succeeded; `final` is the summary (status fields, `output` among them)."""

    def status(self) -> dict[str, Any]:
        """Fields of `status.tracking` this tracker sets (e.g. the run id)."""

    def close(self) -> None:
        """Release files and connections; called whether or not the run finished."""


class Trackers:
    """Fans each call out to every tracker; one failing is logged and never stops training."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def record(self, record: Mapping[str, Any]) -> None:
        self._each("record", record)

    def finish(self, output_dir: Path, final: Mapping[str, Any]) -> None:
        self._each("finish", output_dir, final)

    def close(self) -> None:
        self._each("close")

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tracker in self.trackers:
            out |= tracker.status()
        return out

    def _each(self, method: str, *args: Any) -> None:
        for tracker in self.trackers:
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # tracking is a copy; metrics.jsonl is the record
                log.warning("tracker %s: %s failed: %s", type(tracker).__name__, method, err)


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Scalar name → value for one metrics.jsonl record; {} for checkpoint records.

    Train fields map through TRAIN_SCALARS; every numeric eval field becomes
    `eval/<snake_case>` (`evalLoss` → `eval/loss`), and a nested mapping (eval per member
    dataset, `{"datasets": {"chat": {"evalLoss": 1.2}}}`) `eval/chat/loss`.
    """
    kind = record.get("type")
    if kind == "train":
        return {
            name: float(record[key])
            for key, name in TRAIN_SCALARS.items()
            if _is_number(record.get(key))
        }
    if kind == "eval":
        return _flatten("eval", {k: v for k, v in record.items() if k not in NOT_SCALARS})
    return {}


def _flatten(prefix: str, fields: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            # A map of member datasets: its keys are dataset names, kept as written.
            for name, inner in value.items():
                if isinstance(inner, Mapping):
                    out |= _flatten(f"{prefix}/{name}", inner)
        elif _is_number(value):
            out[f"{prefix}/{_snake(key)}"] = float(value)
    return out


def _snake(key: str) -> str:
    key = key[4].lower() + key[5:] if key.startswith("eval") and len(key) > 4 else key
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
