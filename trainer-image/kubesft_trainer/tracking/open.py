"""The trackers of one run: TensorBoard always, MLflow when the spec names a server."""

from __future__ import annotations

import logging
from pathlib import Path

from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.tracking.base import Tracker

log = logging.getLogger(__name__)


def open_trackers(
    config: TrainerConfig, output_dir: Path, *, resume_step: int = 0
) -> list[Tracker]:
    """Trackers for the main process. TensorBoard files that cannot be written are logged
    and skipped (metrics.jsonl holds the same); an MLflow server the spec names but that
    cannot be reached raises, before any training time is spent."""
    trackers: list[Tracker] = []
    try:
        from kubesft_trainer.tracking.tensorboard import TensorBoardTracker

        trackers.append(TensorBoardTracker(output_dir, resume_step=resume_step))
    except Exception as err:
        log.warning("no TensorBoard files for this run: %s", err)
    mlflow = config.spec.tracking.mlflow
    if mlflow is not None:
        from kubesft_trainer.tracking.mlflow import MLflowTracker

        trackers.append(MLflowTracker(mlflow, config, output_dir))
    return trackers
