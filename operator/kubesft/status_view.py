"""`kubesft status`: a human summary of an SFTJob (progress bar, loss sparkline, per-dataset
eval loss, retention, the mixture plan, samples)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.api.job import SFTJobSpec
from kubesft.api.retention import RetentionStatus, relative_change
from kubesft.operator.build_trainer import OUTPUT_DIR
from kubesft.operator.job_signals import SIGNALS

SPARKS = "▁▂▃▄▅▆▇█"
PHASE_STYLE = {
    "Succeeded": "bold green",
    "Failed": "bold red",
    "Running": "bold cyan",
    "Suspended": "yellow",
    "Queued": "yellow",
    "WaitingForDataset": "yellow",
}


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but newline and tab: a model's sample may hold escape sequences that
would move the cursor or recolour the terminal."""


def printable(text: str) -> Text:
    """``text`` as plain rich Text (no markup), control characters shown as ``\\xNN``."""
    return Text(CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text))


def output_location(spec: SFTJobSpec, path: str) -> str:
    """A path the trainer reported (inside its pod) as the user names it: pvc://claim/path.

    s3:// URLs and paths outside the output mount are returned unchanged.
    """
    pvc = spec.output.pvc
    if pvc is None or not (path == OUTPUT_DIR or path.startswith(OUTPUT_DIR + "/")):
        return path
    return f"pvc://{pvc.claim_name}/{path.removeprefix(OUTPUT_DIR).strip('/')}"


def sparkline(values: Sequence[float]) -> str:
    """Eight-level bars scaled between the series' min and max."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[int((v - low) / span * (len(SPARKS) - 1))] for v in values)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _eta(seconds: int | None) -> str:
    if not seconds:
        return ""
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{sec:02d}s"


def _progress(status: SFTJobStatus) -> RenderableType:
    """Bar, steps, speed and, while it runs, the ETA (a suspended or queued job has none)."""
    p = status.progress
    if p is None:
        return Text("no progress reported yet", style="dim")
    bar = ProgressBar(total=100, completed=p.percent, width=40)
    steps = f"step {p.step}/{p.total_steps or '?'}  {p.percent}%"
    speed = f"{p.tokens_per_second:.0f} tok/s" if p.tokens_per_second else ""
    eta = _eta(p.eta_seconds) if status.phase == "Running" else ""
    line = Text(f"  {steps}  {speed}  {eta}".rstrip())
    if p.peak_gpu_memory_gi_b is None:
        return Group(bar, line)
    memory = f"  GPU memory peak {p.peak_gpu_memory_gi_b:.1f} GiB"
    estimate = status.preflight.estimated_gpu_memory_gi_b if status.preflight else None
    if estimate is not None:
        memory += f" (preflight estimate {estimate:.1f} GiB)"
    return Group(bar, line, Text(memory, style="dim"))


def _metrics(status: SFTJobStatus) -> RenderableType:
    """Losses, with the eval loss of each mixture member under the overall one (the latest
    evaluation's, else the final one's), and the retention loss."""
    m = status.metrics
    table = Table.grid(padding=(0, 2))
    if m is not None:
        table.add_row(
            "train loss", _fmt(m.train_loss), Text(sparkline(m.loss_history), style="cyan")
        )
        table.add_row("eval loss", _fmt(m.eval_loss), f"perplexity {_fmt(m.perplexity)}")
    by_dataset = (m.eval_by_dataset if m else []) or (
        status.evaluation.by_dataset if status.evaluation else []
    )
    for member in by_dataset:
        tokens = f"{member.tokens} tokens" if member.tokens else ""
        table.add_row(f"  eval loss · {member.name}", _fmt(member.eval_loss), tokens)
    if m is not None:
        table.add_row("token accuracy", _fmt(m.token_accuracy), f"lr {_fmt(m.learning_rate, 3)}")
    retention = _retention(status.retention)
    if retention is not None:
        table.add_row(*retention)
    return table


def _retention(r: RetentionStatus | None) -> tuple[str, str, Text] | None:
    """`retention loss · <set>`, before -> latest, and the relative change (red past 0)."""
    if r is None:
        return None
    latest = "" if r.loss is None else f" -> {_fmt(r.loss)}"
    at = f" at step {r.step}" if r.step is not None and r.loss is not None else ""
    change = Text("")
    if r.loss_before is not None and r.loss is not None:
        value = relative_change(r.loss_before, r.loss)
        change = Text(f"{value:+.1%} vs before training{at}", style="red" if value > 0 else "green")
    return f"retention loss · {r.name}", f"{_fmt(r.loss_before)} before{latest}", change


def _mixture(job: SFTJob, status: SFTJobStatus) -> RenderableType | None:
    """The plan the trainer drew (status.mixture); before it has, the spec's shares."""
    members = job.spec.datasets
    if not status.mixture and members is None:
        return None
    table = Table(title=f"mixture (by {job.spec.training.mix_by})", box=None, pad_edge=False)
    for column in ("dataset", "weight", "examples", "examples/epoch", "tokens/epoch", "repeats"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for e in status.mixture:
        repeats = Text(f"x{e.repeats:.2f}", style="yellow" if e.repeats > 1 else "")
        table.add_row(
            e.name,
            f"{e.weight:.1%}",
            str(e.examples),
            str(e.examples_per_epoch),
            str(e.tokens_per_epoch),
            repeats,
        )
    if not status.mixture and members is not None:
        total = sum(m.weight for m in members)
        for m in members:
            table.add_row(m.name, f"{m.weight / total:.1%}", "-", "-", "-", "-")
        table.caption = "drawn by the trainer before its first step"
    return table


def _datasets(spec: SFTJobSpec) -> str:
    """`dataset x`, or `datasets a, b, c` for a mixture; with the retention set."""
    names = spec.training_dataset_names()
    text = f"dataset{'s' if spec.datasets is not None else ''} {', '.join(names)}"
    retention = spec.evaluation.retention
    return text + (f" · retention {retention.name}" if retention else "")


def _conditions(status: SFTJobStatus) -> RenderableType:
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("condition", "status", "reason", "message"):
        table.add_column(column, style="dim" if column == "condition" else None)
    for c in status.conditions:
        bad_when_true = c.type == "Failed" or c.type in SIGNALS
        style = "green" if (c.status == "True") != bad_when_true else "yellow"
        table.add_row(c.type, Text(c.status, style=style), c.reason, printable(c.message))
    return table


def _samples(status: SFTJobStatus) -> RenderableType | None:
    ev = status.evaluation
    if ev is None or not ev.samples:
        return None
    table = Table(title="samples (greedy)", show_lines=True)
    for column in ("prompt", "before", "after"):
        table.add_column(column, overflow="fold")
    for s in ev.samples:
        table.add_row(printable(s.prompt), printable(s.before), printable(s.after))
    return table


def render_status(job: SFTJob) -> RenderableType:
    """Everything a person checks first about one SFTJob, in one panel."""
    status = job.status or SFTJobStatus()
    spec = job.spec
    phase = Text(status.phase, style=PHASE_STYLE.get(status.phase, "bold"))
    header = Text.assemble(phase, f"   {spec.model.name} · {spec.method.type} · {_datasets(spec)}")
    parts: list[RenderableType] = [header, _progress(status), _metrics(status)]
    mixture = _mixture(job, status)
    if mixture is not None:
        parts.append(mixture)
    if status.output:
        where = output_location(spec, status.output.path)
        parts.append(Text(f"output: {where} ({status.output.kind})", style="green"))
    if status.best_checkpoint:
        parts.append(Text(f"best checkpoint: {output_location(spec, status.best_checkpoint)}"))
    parts.append(_conditions(status))
    samples = _samples(status)
    if samples is not None:
        parts.append(samples)
    title = f"SFTJob {job.metadata.namespace}/{job.metadata.name}"
    return Panel(Group(*parts), title=title, title_align="left")
