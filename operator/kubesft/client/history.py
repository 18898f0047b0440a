"""Metrics history of an SFTJob: what the status carries, and the full `metrics.jsonl`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubesft.api import SFTJob
from kubesft.api.job_status import CheckpointInfo, Metrics

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class MetricsHistory:
    """Loss curves of one SFTJob as its status reports them."""

    train_loss: list[float] = field(default_factory=list)
    """The most recent train losses, one per optimizer step, oldest first (at most 50)."""
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    """(step, eval loss) of each checkpoint that was evaluated."""
    latest: Metrics | None = None
    """The latest train/eval metrics (loss, perplexity, token accuracy, lr, grad norm)."""
    step: int = 0
    """The optimizer step the history reaches."""


def history_from_status(job: SFTJob) -> MetricsHistory:
    """The history an SFTJob's status holds (empty before the trainer's first report)."""
    status = job.status
    if status is None:
        return MetricsHistory()
    checkpoints: list[CheckpointInfo] = sorted(status.checkpoints, key=lambda c: c.step)
    return MetricsHistory(
        train_loss=list(status.metrics.loss_history) if status.metrics else [],
        eval_loss=[(c.step, c.eval_loss) for c in checkpoints if c.eval_loss is not None],
        latest=status.metrics,
        step=status.progress.step if status.progress else 0,
    )


def read_metrics(output: str | Path) -> list[dict[str, Any]]:
    """Every record of `metrics.jsonl` in an output directory (or the file itself).

    `output` is a local path (a mounted output PVC) or, with fsspec/s3fs installed, an
    `s3://bucket/prefix` URL as in `status.output`. Records are dicts with `type`
    (train | eval | checkpoint), `step`, and camelCase metrics (`trainLoss`, `evalLoss`,
    `learningRate`, `gradNorm`, `tokensPerSecond`), as the trainer writes them.
    A line torn by a crash mid-write is skipped. Raises ``FileNotFoundError``.
    """
    location = str(output)
    if not location.endswith(".jsonl"):
        location = location.rstrip("/") + "/" + METRICS_FILE
    if "://" in location:
        import fsspec  # type: ignore[import-untyped, unused-ignore]

        with fsspec.open(location, "rt", encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = Path(location).read_text(encoding="utf-8")
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "type" in record:
            records.append(record)
    return records
