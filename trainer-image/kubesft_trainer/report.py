"""Report: progress to the resource, the durable record in the output directory, the summary.

Three channels, from most to least durable:
- `metrics.jsonl` (one JSON record per train step, eval and checkpoint), `eval.json` and
  `loss.png` in the output directory;
- progress reports sent to a `ProgressSink`: dicts whose camelCase keys are SFTJob status
  fields (`progress`, `metrics`, `checkpoints`, `bestCheckpoint`, `evaluation`, `output`),
  so a sink that patches `sftjobs/status` copies them as they are;
- the container termination message: the final report, shrunk to fit 4 KiB.
Sinks are best effort: a failed send is logged and training goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kubesft.api.job_status import LOSS_HISTORY

if TYPE_CHECKING:  # keeps this module free of torch, which evaluate imports
    from kubesft_trainer.evaluate import EvalResult
    from kubesft_trainer.tracking import Trackers

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
PLOT_FILE = "loss.png"
TERMINATION_MESSAGE_BYTES = 4096
"""Kubernetes keeps at most this much of a container's termination message."""
SAMPLE_CHARS = (512, 256, 128, 64, 32, 16)
"""Lengths sample texts are cut to, in turn, while a termination message is too big."""
ESSENTIAL_FIELDS = (
    *("truncated", "phase", "reason", "message"),
    *("progress", "metrics", "output", "bestCheckpoint"),
)
"""Fields of a termination message dropped only when nothing else is left to shrink."""

Report = dict[str, Any]


class ProgressSink(Protocol):
    """Where progress reports go: a file, the SFTJob status, a test's list."""

    def send(self, report: Report) -> None: ...


class FileSink:
    """Keeps the latest report as JSON in one file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, report: Report) -> None:
        _write_atomic(self.path, json.dumps(report, indent=2) + "\n")


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
        self._pending: Report | None = None

    def send(self, report: Report, force: bool = False) -> None:
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


class Reporter:
    """Records training as it happens: metrics.jsonl lines, progress reports, the summary.

    `resume_step` is the step a resumed run continues after: records past it (written
    after the checkpoint it resumes from) are dropped so steps stay continuous, and the
    rest are replayed into the reported state. A fresh start (0) begins a new record.
    Only one process (rank 0) should own a Reporter.
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
        trackers: Trackers | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.trackers = trackers  # TensorBoard, MLflow: fed each new metrics.jsonl record
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.termination_log = termination_log
        self.clock = clock
        self.sink = (
            sink
            if isinstance(sink, RateLimitedSink)
            else RateLimitedSink(sink, min_interval_s, clock)
        )
        self.progress_state: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self._rate_origin: tuple[int, float] | None = None
        records = read_metrics(self.output_dir) if resume_step > 0 else []
        kept = [r for r in records if r["step"] <= resume_step]
        _write_atomic(self.metrics_path, "".join(_line(r) for r in kept))
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
                "epoch": _number(epoch),
                "trainLoss": _number(train_loss),
                "learningRate": _number(learning_rate),
                "gradNorm": _number(grad_norm),
                "tokensPerSecond": _number(tokens_per_second),
                "etaSeconds": eta,
                "gpuMemoryGiB": _number(gpu_memory_gib),
            }
        )

    def eval(self, step: int, result: EvalResult) -> None:
        """An evaluation finished; always reported."""
        record = {"type": "eval", "step": step, **_eval_metrics(result), "tokens": result.tokens}
        self._record(record, force=True)

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
            "evalLoss": _number(eval_loss),
        }
        if kept is not None:
            record["kept"] = [str(p) for p in kept]
        self._record(record, force=True)

    def report(self) -> Report:
        """The current state as SFTJob status fields."""
        out: Report = {}
        if self.progress_state:
            out["progress"] = dict(self.progress_state)
        if self.metrics:
            out["metrics"] = dict(self.metrics)
        if self.checkpoints:
            out["checkpoints"] = [dict(c) for c in self.checkpoints]
            best = best_checkpoint(self.checkpoints)
            if best is not None:
                out["bestCheckpoint"] = best["path"]
        if self.trackers is not None and (tracking := self.trackers.status()):
            out["tracking"] = tracking
        return out

    def finish(self, summary: Mapping[str, Any], *, plot: bool = True) -> Report:
        """Plot the losses, send the final report and write the termination message.

        `summary` adds status fields (`evaluation`, `output`, ...) and wins over the
        reporter's own on a clash; the merged report is returned. `plot=False` when the
        caller already wrote loss.png (to upload it with the results).
        """
        if plot:
            self.write_plot()
        final = {**self.report(), **summary}
        if self.trackers is not None:
            self.trackers.finish(self.output_dir, final)
            self.trackers.close()
        self._send(final, force=True)
        if self.termination_log is not None:
            write_termination_message(self.termination_log, final)
        return final

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
        if self.trackers is not None:
            self.trackers.record(record)
        self._apply(record)
        self._send(self.report(), force=force)

    def _apply(self, record: Mapping[str, Any]) -> None:
        """Fold one metrics.jsonl record into the reported state."""
        if record["type"] == "train":
            total = record.get("totalSteps")
            percent = 0 if not total else min(100, max(0, 100 * record["step"] // total))
            self.progress_state = _present(
                step=record["step"],
                totalSteps=total,
                epoch=record.get("epoch"),
                percent=percent,
                etaSeconds=record.get("etaSeconds"),
                tokensPerSecond=record.get("tokensPerSecond"),
                peakGpuMemoryGiB=record.get("gpuMemoryGiB"),
                updatedAt=record.get("time"),
            )
            keys = ("trainLoss", "learningRate", "gradNorm")
            if record.get("trainLoss") is not None:
                history = [*self.metrics.get("lossHistory", []), round(record["trainLoss"], 4)]
                self.metrics["lossHistory"] = history[-LOSS_HISTORY:]
        elif record["type"] == "eval":
            keys = ("evalLoss", "perplexity", "tokenAccuracy")
        elif record["type"] == "checkpoint":
            entry = _present(
                step=record["step"],
                path=record["path"],
                evalLoss=record.get("evalLoss"),
                createdAt=record.get("time"),
            )
            self.checkpoints = [c for c in self.checkpoints if c["path"] != entry["path"]]
            self.checkpoints.append(entry)
            if "kept" in record:
                kept = set(record["kept"]) | {entry["path"]}
                self.checkpoints = [c for c in self.checkpoints if c["path"] in kept]
            return
        else:
            return
        self.metrics |= {key: record.get(key) for key in keys if record.get(key) is not None}

    def _send(self, report: Report, force: bool) -> None:
        try:
            self.sink.send(report, force=force)
        except Exception:  # progress is best effort; the output directory is the record
            log.warning("cannot send a progress report", exc_info=True)


def best_checkpoint(checkpoints: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The checkpoint with the lowest eval loss (the latest among equals), if any has one."""
    scored = [c for c in checkpoints if c.get("evalLoss") is not None]
    return min(reversed(scored), key=lambda c: c["evalLoss"]) if scored else None


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


def prompt_text(prompt: Mapping[str, Any] | str) -> str:
    """What a human reads as the prompt: the last user message, or the prompt string."""
    if isinstance(prompt, str):
        return prompt
    if "messages" in prompt:
        users = [m["content"] for m in prompt["messages"] if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(prompt.get("prompt", ""))


def evaluation_status(
    final: EvalResult,
    prompts: Sequence[Mapping[str, Any] | str],
    before_samples: Sequence[str],
    after_samples: Sequence[str],
) -> Report:
    """The `evaluation` status field: final metrics and before/after samples."""
    return {
        **_eval_metrics(final),
        "samples": [
            {"prompt": prompt_text(p), "before": b, "after": a}
            for p, b, a in zip(prompts, before_samples, after_samples, strict=True)
        ],
    }


def write_eval_json(
    output_dir: str | Path,
    before_samples: Sequence[str],
    after_samples: Sequence[str],
    prompts: Sequence[Mapping[str, Any] | str],
    final: EvalResult,
    *,
    references: Sequence[str] | None = None,
) -> Path:
    """eval.json: final metrics, and each prompt with its reference and both generations."""
    refs: Sequence[str | None] = references if references is not None else [None] * len(prompts)
    doc = {
        "metrics": {**_eval_metrics(final), "tokens": final.tokens},
        "samples": [
            {"prompt": p, "promptText": prompt_text(p), "reference": r, "before": b, "after": a}
            for p, r, b, a in zip(prompts, refs, before_samples, after_samples, strict=True)
        ],
    }
    path = Path(output_dir) / EVAL_FILE
    _write_atomic(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    return path


def write_loss_plot(output_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """loss.png: train and eval loss against the optimizer step."""
    # Imported here: matplotlib is slow to import and only the end of a run needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for kind, key, style in (("train", "trainLoss", "-"), ("eval", "evalLoss", "o-")):
        points = [
            (r["step"], r[key]) for r in records if r["type"] == kind and r.get(key) is not None
        ]
        if points:
            steps, losses = [p[0] for p in points], [p[1] for p in points]
            axes.plot(steps, losses, style, label=f"{kind} loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend()
    path = Path(output_dir) / PLOT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def write_termination_message(
    path: str | Path, summary: Mapping[str, Any], limit: int = TERMINATION_MESSAGE_BYTES
) -> bool:
    """Write `summary` as compact JSON of at most `limit` bytes; False when it cannot be written.

    Too big a summary is shrunk in a fixed order: sample texts cut shorter and shorter,
    samples dropped from the end, the checkpoint list cut to the best one, long strings
    cut, then whole fields dropped, the least useful first. A shrunk message carries
    `"truncated": true`.
    """
    text = fit_termination_message(summary, limit)
    try:
        # Written in place: /dev/termination-log is a mounted file, not a renameable path.
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        log.warning("cannot write the termination message to %s: %s", path, err)
        return False
    return True


def fit_termination_message(summary: Mapping[str, Any], limit: int) -> str:
    """Compact JSON of `summary` shrunk deterministically to at most `limit` UTF-8 bytes."""
    doc = json.loads(json.dumps(summary, default=str))
    text = _compact(doc)
    if len(text.encode()) <= limit:
        return text
    doc["truncated"] = True
    for _ in _shrink(doc):
        text = _compact(doc)
        if len(text.encode()) <= limit:
            return text
    return _compact({"truncated": True})[:limit]


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
    # What a user needs most goes last: why it ended, then where the result is.
    for key in ("progress", "metrics", "bestCheckpoint", "output", "message", "reason", "phase"):
        if doc.pop(key, None) is not None:
            yield


def _cut_strings(fields: dict[str, Any], chars: int) -> None:
    for key, value in fields.items():
        if isinstance(value, str) and len(value) > chars:
            fields[key] = value[: chars - 1] + "…"


def _compact(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _number(value: float | None) -> float | None:
    """Six significant digits (status columns stay readable); NaN/inf become missing,
    since JSON has neither and a diverged loss is better reported as absent."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _eval_metrics(result: EvalResult) -> dict[str, float | None]:
    return {
        "evalLoss": _number(result.loss),
        "perplexity": _number(result.perplexity),
        "tokenAccuracy": _number(result.token_accuracy),
    }


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
