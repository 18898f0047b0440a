"""Where the trainer's reports go: small protocols, so a new destination is one class.

Two kinds of sink:
- `ProgressSink.send(report)` receives the whole `TrainerReport` (the SFTJob status
  fields) whenever it changes, at most every few seconds (`RateLimitedSink`): the
  progress file, the SFTJob status (`kube_status.KubeStatusSink`), a test's list.
- `MetricsSink.write(record)` receives every metrics.jsonl record as it is written
  (train step, eval, checkpoint; see `report.Reporter`), unthrottled, and `close()` once
  at the end: for experiment trackers that plot each step (TensorBoard, MLflow).
Sinks are best effort: the Reporter logs a failed send and training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from kubesft.api.report import TrainerReport

log = logging.getLogger(__name__)

MetricsRecord = Mapping[str, Any]
"""One metrics.jsonl line: `type` (train|eval|checkpoint), `step`, `time` and its values."""


class ProgressSink(Protocol):
    """Receives the latest status report."""

    def send(self, report: TrainerReport) -> None: ...


class MetricsSink(Protocol):
    """Receives every metrics record; closed once when the run ends."""

    def write(self, record: MetricsRecord) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Keeps the latest report as JSON in one file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, report: TrainerReport) -> None:
        write_atomic(self.path, json.dumps(report.status_fields(), indent=2) + "\n")


class FanOutSink:
    """Sends each report to several sinks (the output directory and the resource)."""

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks

    def send(self, report: TrainerReport) -> None:
        for sink in self.sinks:
            try:
                sink.send(report)
            except Exception as err:  # one sink failing must not silence the others
                log.warning("progress sink %s failed: %s", type(sink).__name__, err)


class RateLimitedSink:
    """Passes a report on at most every `min_interval_s`; forced reports always go through.

    The latest report held back is sent on `flush()`/`close()`, so nothing final is lost.
    """

    def __init__(
        self,
        inner: ProgressSink,
        min_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._last_sent: float | None = None
        self._pending: TrainerReport | None = None

    def send(self, report: TrainerReport, force: bool = False) -> None:
        now = self.clock()
        due = self._last_sent is None or now - self._last_sent >= self.min_interval_s
        if force or due:
            self._pending = None
            self._last_sent = now
            self.inner.send(report)
        else:
            self._pending = report

    def flush(self) -> None:
        if self._pending is not None:
            self.send(self._pending, force=True)

    def close(self) -> None:
        self.flush()


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
