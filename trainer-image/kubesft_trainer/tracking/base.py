"""The tracker interface and the scalar names every tracker uses.

A tracker is a `sinks.MetricsSink` (each new metrics.jsonl record through `write`, `close`
once) that also ends the run with its output (`finish`) and reports where the run is
(`status`, into `status.tracking`). The Reporter treats it like any metrics sink (best
effort); `tracking_status` and `finish_trackers` are its two extra calls.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kubesft.api.tracking import TrackingStatus

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
RETENTION_SCALARS = ("loss", "lossBefore", "relativeChange")
"""Fields of an eval record's `retention` plotted as `retention/<snake_case>`."""


@runtime_checkable
class Tracker(Protocol):
    """One experiment tracker, fed the records of metrics.jsonl as they are written."""

    def write(self, record: Mapping[str, Any]) -> None:
        """One metrics.jsonl record (train step, eval or checkpoint)."""

    def finish(self, output_dir: Path, final: Mapping[str, Any]) -> None:
        """The run succeeded; `final` is the final report as status fields (`output`...)."""

    def status(self) -> dict[str, Any]:
        """Fields of `status.tracking` this tracker sets (e.g. the run id)."""

    def close(self) -> None:
        """Release files and connections; called whether or not the run finished."""


def tracking_status(sinks: Iterable[object]) -> TrackingStatus | None:
    """`status.tracking` from the trackers among `sinks`; None when none reports any."""
    fields: dict[str, Any] = {}
    for sink in sinks:
        if isinstance(sink, Tracker):
            fields |= sink.status()
    return TrackingStatus.model_validate(fields) if fields else None


def finish_trackers(sinks: Iterable[object], output_dir: Path, final: Mapping[str, Any]) -> None:
    """`finish` every tracker among `sinks`; one failing is logged, never fails the run."""
    for sink in sinks:
        if isinstance(sink, Tracker):
            try:
                sink.finish(output_dir, final)
            except Exception as err:  # tracking is a copy; metrics.jsonl is the record
                log.warning("tracker %s: finish failed: %s", type(sink).__name__, err)


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Scalar name → value for one metrics.jsonl record; {} for checkpoint records.

    Train fields map through TRAIN_SCALARS; every numeric eval field becomes
    `eval/<snake_case>` (`evalLoss` → `eval/loss`), and a nested mapping (eval per member
    dataset, `{"datasets": {"chat": {"evalLoss": 1.2}}}`) `eval/chat/loss`; the retention
    status (`{"retention": {"loss": 2.1, "relativeChange": 0.05}}`) `retention/loss` and
    `retention/relative_change`.
    """
    kind = record.get("type")
    if kind == "train":
        return {
            name: float(record[key])
            for key, name in TRAIN_SCALARS.items()
            if _is_number(record.get(key))
        }
    if kind == "eval":
        fields = {k: v for k, v in record.items() if k not in NOT_SCALARS | {"retention"}}
        retention = record.get("retention") or {}
        return _flatten("eval", fields) | {
            f"retention/{_snake(key)}": float(retention[key])
            for key in RETENTION_SCALARS
            if _is_number(retention.get(key))
        }
    return {}


def _flatten(prefix: str, fields: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            # A map of member datasets: its keys are dataset names, kept as written.
            for name, inner in value.items():
                if isinstance(inner, Mapping):
                    kept = {k: v for k, v in inner.items() if k not in NOT_SCALARS}
                    out |= _flatten(f"{prefix}/{name}", kept)
        elif _is_number(value):
            out[f"{prefix}/{_snake(key)}"] = float(value)
    return out


def _snake(key: str) -> str:
    key = key[4].lower() + key[5:] if key.startswith("eval") and len(key) > 4 else key
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
