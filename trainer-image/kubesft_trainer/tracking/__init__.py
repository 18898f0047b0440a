"""Experiment tracking: the records of `metrics.jsonl`, also sent where ML teams look.

Every run writes TensorBoard event files next to `metrics.jsonl`; with
`spec.tracking.mlflow` it also logs to an MLflow tracking server. Each tracker is a
:class:`Tracker` (a metrics sink) fed the same records the reporter appends to
`metrics.jsonl`, so the three never disagree. Another backend (Weights & Biases:
`wandb.init(project=..., id=..., resume="allow")`, `wandb.log(scalars, step=...)`, the
output as an artifact at the end, an API-key Secret as `WANDB_API_KEY`) is one more module
implementing the protocol plus a `spec.tracking.wandb` section (docs/tracking.md).
"""

from kubesft_trainer.tracking.base import Tracker, finish_trackers, scalars, tracking_status
from kubesft_trainer.tracking.open import open_trackers

__all__ = ["Tracker", "finish_trackers", "open_trackers", "scalars", "tracking_status"]
