"""`kubesft status`: a human summary of an SFTJob (progress bar, loss sparkline, samples)."""

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
from kubesft.operator.build_trainer import OUTPUT_DIR

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
    m = status.metrics
    table = Table.grid(padding=(0, 2))
    if m is None:
        return table
    table.add_row("train loss", _fmt(m.train_loss), Text(sparkline(m.loss_history), style="cyan"))
    table.add_row("eval loss", _fmt(m.eval_loss), f"perplexity {_fmt(m.perplexity)}")
    table.add_row("token accuracy", _fmt(m.token_accuracy), f"lr {_fmt(m.learning_rate, 3)}")
    return table


def _conditions(status: SFTJobStatus) -> RenderableType:
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("condition", "status", "reason", "message"):
        table.add_column(column, style="dim" if column == "condition" else None)
    for c in status.conditions:
        style = "green" if (c.status == "True") != (c.type == "Failed") else "yellow"
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
    header = Text.assemble(
        phase, f"   {spec.model.name} · {spec.method.type} · dataset {spec.dataset.name}"
    )
    parts: list[RenderableType] = [header, _progress(status), _metrics(status)]
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
