"""Report: training as it happens, into metrics.jsonl, the sinks and the termination message.

Three channels, from most to least durable:
- `metrics.jsonl` (one JSON record per train step, eval and checkpoint) in the output
  directory, plus `eval.json` and `loss.png` at the end (`results.py`);
- `TrainerReport`s (the SFTJob status fields of `kubesft.api.report`) sent to a
  `ProgressSink`, rate limited, and each record to every `MetricsSink` (`sinks.py`);
- the container termination message: the final `TrainerTermination` (`termination.py`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubesft.api.job_status import (
    EVAL_HISTORY,
    LOSS_HISTORY,
    CheckpointInfo,
    EvalPoint,
    Fingerprint,
    Metrics,
    Progress,
)
from kubesft.api.mixture import MixtureEntry
from kubesft.api.report import TrainerReport, TrainerTermination, best_checkpoint
from kubesft.api.retention import RetentionStatus
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.results import (
    PLOT_FILE,
    dataset_evals,
    eval_metrics,
    rounded,
    write_loss_plot,
)
from kubesft_trainer.run_identity import config_fingerprint
from kubesft_trainer.sinks import MetricsSink, ProgressSink, RateLimitedSink, write_atomic
from kubesft_trainer.termination import write_termination_message
from kubesft_trainer.tracking.base import finish_trackers, tracking_status

if TYPE_CHECKING:  # keeps this module free of torch, which evaluate imports
    from kubesft_trainer.evaluate import EvalResult

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class Reporter:
    """Records training as it happens: metrics.jsonl lines, progress reports, the summary.

    `resume_step` is the step a resumed run continues after: records past it (written
    after the checkpoint it resumes from) are dropped so steps stay continuous, and the
    rest are replayed into the reported state. A fresh start (0) begins a new record.
    `metric_sinks` receive each new record (not the replayed ones). Only one process
    (rank 0) should own a Reporter.
    """

    def __init__(
        self,
        output_dir: str | Path,
        sink: ProgressSink,
        termination_log: str | Path | None = None,
        *,
        min_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        resume_step: int = 0,
        metric_sinks: Sequence[MetricsSink] = (),
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.termination_log = termination_log
        self.clock = clock
        self.sink = (
            sink
            if isinstance(sink, RateLimitedSink)
            else RateLimitedSink(sink, min_interval_s, clock)
        )
        self.metric_sinks = list(metric_sinks)
        self.progress_state: Progress | None = None
        self.metrics: Metrics | None = None
        self.checkpoints: list[CheckpointInfo] = []
        self._rate_origin: tuple[int, float] | None = None
        self.resume_step = resume_step
        self.mixture_plan: list[MixtureEntry] = []
        self.retention: RetentionStatus | None = None
        self._train_losses: list[float] = []
        """Train losses since the last evaluation; their mean goes beside its eval loss."""
        records = read_metrics(self.output_dir) if resume_step > 0 else []
        kept = [r for r in records if r["step"] <= resume_step]
        write_atomic(self.metrics_path, "".join(_line(r) for r in kept))
        for record in kept:
            self._apply(record)

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / METRICS_FILE

    def progress(
        self,
        step: int,
        total_steps: int | None,
        epoch: float | None,
        tokens_per_second: float | None,
        train_loss: float | None,
        learning_rate: float | None,
        grad_norm: float | None,
        gpu_memory_gib: float | None = None,
    ) -> None:
        """One optimizer step done; reported when the rate limit allows.

        `gpu_memory_gib` is the peak memory torch allocated on this rank's GPU so far
        (None on CPU): what to compare with preflight's estimate.
        """
        now = self.clock()
        if self._rate_origin is None:
            self._rate_origin = (step, now)
        first_step, started = self._rate_origin
        eta = None
        if total_steps is not None and step > first_step and now > started:
            eta = round((total_steps - step) * (now - started) / (step - first_step))
        self._record(
            {
                "type": "train",
                "step": step,
                "totalSteps": total_steps,
                "epoch": rounded(epoch),
                "trainLoss": rounded(train_loss),
                "learningRate": rounded(learning_rate),
                "gradNorm": rounded(grad_norm),
                "tokensPerSecond": rounded(tokens_per_second),
                "etaSeconds": eta,
                "gpuMemoryGiB": rounded(gpu_memory_gib),
            }
        )

    def eval(
        self, step: int, result: EvalResult | None, retention: RetentionStatus | None = None
    ) -> None:
        """An evaluation finished (eval split, retention set or both); always reported.

        The record holds each member's eval loss under `datasets` (a mixture) and the
        retention status under `retention`.
        """
        record: dict[str, Any] = {"type": "eval", "step": step}
        if result is not None:
            record |= {**eval_metrics(result), "tokens": result.tokens}
            evals = dataset_evals(result)
            if evals:
                record["datasets"] = {
                    d.name: {"evalLoss": d.eval_loss, "tokens": d.tokens} for d in evals
                }
        if retention is not None:
            record["retention"] = retention.model_dump(by_alias=True, exclude_none=True)
        self._record(record, force=True)

    def mixture(self, plan: Sequence[MixtureEntry]) -> None:
        """The mixture drawn for spec.datasets; sent at once, before the first step."""
        self.mixture_plan = list(plan)
        self._send(self.report(), force=True)

    def checkpoint(
        self,
        step: int,
        path: str | Path,
        eval_loss: float | None = None,
        *,
        kept: Iterable[str | Path] | None = None,
    ) -> None:
        """A checkpoint is complete; `kept` lists the checkpoints still on disk after pruning."""
        record: dict[str, Any] = {
            "type": "checkpoint",
            "step": step,
            "path": str(path),
            "evalLoss": rounded(eval_loss),
        }
        if kept is not None:
            record["kept"] = [str(p) for p in kept]
        self._record(record, force=True)

    def report(self) -> TrainerReport:
        """The current state as SFTJob status fields."""
        best = best_checkpoint(self.checkpoints)
        progress = self.progress_state
        if progress is not None and self.resume_step > 0:
            progress = progress.model_copy(update={"resumed_from_step": self.resume_step})
        return TrainerReport(
            progress=progress,
            metrics=self.metrics,
            checkpoints=list(self.checkpoints) or None,
            best_checkpoint=best.path if best is not None else None,
            tracking=tracking_status(self.metric_sinks),
            mixture=self.mixture_plan or None,
            retention=self.retention,
        )

    def finish(self, summary: TrainerTermination, *, plot: bool = True) -> TrainerTermination:
        """Plot the losses, send the final report and write the termination message.

        The fields `summary` sets (`evaluation`, `output`, ...) win over the reporter's
        own; the merged message is returned. `plot=False` when the caller already wrote
        loss.png (to upload it with the results).
        """
        if plot:
            self.write_plot()
        final = TrainerTermination.model_validate(
            {
                **self.report().model_dump(exclude_none=True),
                **summary.model_dump(exclude_unset=True),
            }
        )
        finish_trackers(self.metric_sinks, self.output_dir, final.status_fields())
        self._send(final, force=True)
        write_termination_message(self.termination_log, final)
        self.close()
        return final

    def close(self) -> None:
        """Close the metric sinks (idempotent); `finish` calls it."""
        sinks, self.metric_sinks = self.metric_sinks, []
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # a tracker failing to flush must not fail a finished run
                log.warning("cannot close metrics sink %s", type(sink).__name__, exc_info=True)

    def write_plot(self) -> None:
        """loss.png from metrics.jsonl so far."""
        try:
            write_loss_plot(self.output_dir, read_metrics(self.output_dir))
        except Exception:  # the plot is a convenience; never fail a finished run over it
            log.warning("cannot write %s", PLOT_FILE, exc_info=True)

    def _record(self, record: dict[str, Any], force: bool = False) -> None:
        record["time"] = _rfc3339_now()
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(_line(record))
        self._apply(record)
        for sink in self.metric_sinks:
            try:
                sink.write(record)
            except Exception:  # trackers are best effort; metrics.jsonl is the record
                log.warning("metrics sink %s failed", type(sink).__name__, exc_info=True)
        self._send(self.report(), force=force)

    def _apply(self, record: Mapping[str, Any]) -> None:
        """Fold one metrics.jsonl record into the reported state."""
        if record["type"] == "train":
            self.progress_state = _progress(record)
            keys: tuple[str, ...] = ("trainLoss", "learningRate", "gradNorm")
            history = self.metrics.loss_history if self.metrics else []
            if record.get("trainLoss") is not None:
                history = [*history, round(record["trainLoss"], 4)][-LOSS_HISTORY:]
                self._train_losses.append(record["trainLoss"])
            self._update_metrics(record, keys, lossHistory=history)
        elif record["type"] == "eval":
            by_dataset = [
                {"name": name, **values} for name, values in record.get("datasets", {}).items()
            ]
            extra = {"evalByDataset": by_dataset} if by_dataset else {}
            self._update_metrics(
                record,
                ("evalLoss", "perplexity", "tokenAccuracy"),
                evalHistory=self._evals(record),
                **extra,
            )
            if "retention" in record:
                retention = {**record["retention"], "step": record["step"]}
                self.retention = RetentionStatus.model_validate(retention)
        elif record["type"] == "checkpoint":
            entry = CheckpointInfo(
                step=record["step"],
                path=record["path"],
                eval_loss=record.get("evalLoss"),
                created_at=record.get("time"),
            )
            self.checkpoints = [c for c in self.checkpoints if c.path != entry.path]
            self.checkpoints.append(entry)
            if "kept" in record:
                kept = set(record["kept"]) | {entry.path}
                self.checkpoints = [c for c in self.checkpoints if c.path in kept]

    def _evals(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """metrics.evalHistory with this evaluation added (the Overfitting condition's input)."""
        earlier = self.metrics.eval_history if self.metrics else []
        losses, self._train_losses = self._train_losses, []
        if record.get("evalLoss") is None:
            return [p.model_dump(by_alias=True) for p in earlier]
        train = rounded(sum(losses) / len(losses)) if losses else None
        point = EvalPoint(step=record["step"], eval_loss=record["evalLoss"], train_loss=train)
        return [p.model_dump(by_alias=True) for p in [*earlier, point][-EVAL_HISTORY:]]

    def _update_metrics(
        self, record: Mapping[str, Any], keys: tuple[str, ...], **extra: Any
    ) -> None:
        current = self.metrics.model_dump(by_alias=True) if self.metrics else {}
        new = {key: record[key] for key in keys if record.get(key) is not None}
        self.metrics = Metrics.model_validate({**current, **new, **extra})

    def _send(self, report: TrainerReport, force: bool) -> None:
        try:
            self.sink.send(report, force=force)
        except Exception:  # progress is best effort; the output directory is the record
            log.warning("cannot send a progress report", exc_info=True)


def _progress(record: Mapping[str, Any]) -> Progress:
    total = record.get("totalSteps")
    percent = 0 if not total else min(100, max(0, 100 * record["step"] // total))
    return Progress(
        step=record["step"],
        total_steps=total,
        epoch=record.get("epoch"),
        percent=percent,
        eta_seconds=record.get("etaSeconds"),
        tokens_per_second=record.get("tokensPerSecond"),
        peak_gpu_memory_gi_b=record.get("gpuMemoryGiB"),
        updated_at=record.get("time"),
    )


def run_fingerprint(config: TrainerConfig) -> Fingerprint:
    """`status.fingerprint` as the trainer knows it: the dataset's fingerprint and the
    config's (`run_identity.config_fingerprint`: what a started job may not change, the same
    value its checkpoints are bound to). The image part is the operator's to fill (only the
    node knows the digest it ran)."""
    return Fingerprint(
        dataset=config.runtime.dataset_fingerprint,
        config=config_fingerprint(config.spec),
    )


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a line torn by a crash mid-write is skipped."""
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "type" in record and isinstance(record.get("step"), int):
            records.append(record)
    return records


def last_step(output_dir: str | Path) -> int:
    """The highest step in metrics.jsonl, 0 when there is none."""
    return max((r["step"] for r in read_metrics(output_dir)), default=0)


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
