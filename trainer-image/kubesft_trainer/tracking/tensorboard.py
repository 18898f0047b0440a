"""TensorBoard event files in the output directory, written for every run.

torch's `SummaryWriter` (backed by the `tensorboard` package) writes the standard event
format; `tensorboard --logdir <outputs>` then compares runs by their folder names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubesft_trainer.tracking.base import scalars


class TensorBoardTracker:
    """Scalars of each metrics.jsonl record as TensorBoard summaries at its step."""

    def __init__(self, output_dir: Path, *, resume_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier attempt logged past the checkpoint
        # this one resumes from, as metrics.jsonl drops those records.
        purge = resume_step + 1 if resume_step > 0 else None
        self.writer = SummaryWriter(log_dir=str(output_dir), purge_step=purge)

    def write(self, record: Mapping[str, Any]) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, global_step=int(record["step"]))
        if record.get("type") == "eval":
            self.writer.flush()

    def finish(self, output_dir: Path, final: Mapping[str, Any]) -> None:
        self.writer.flush()

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.writer.close()
