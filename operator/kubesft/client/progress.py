"""A rich progress bar that follows an SFTJob (in a terminal or a Jupyter notebook)."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kubesft.api import SFTJob


class JobProgressBar:
    """One bar per job: phase, percent of optimizer steps, latest train and eval loss."""

    def __init__(self, name: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        self._task: TaskID = self._progress.add_task(name, total=100, detail="")
        self.name = name

    def __enter__(self) -> JobProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, job: SFTJob) -> None:
        """Redraw from the job's current status."""
        status = job.status
        if status is None:
            return
        parts: list[str] = [status.phase]
        if status.progress is not None:
            parts.append(f"step {status.progress.step}/{status.progress.total_steps or '?'}")
        metrics = status.metrics
        if metrics is not None and metrics.train_loss is not None:
            parts.append(f"loss {metrics.train_loss:.4g}")
        if metrics is not None and metrics.eval_loss is not None:
            parts.append(f"eval {metrics.eval_loss:.4g}")
        percent = status.progress.percent if status.progress else 0
        if status.phase == "Succeeded":
            percent = 100
        self._progress.update(self._task, completed=percent, detail="  ".join(parts))
