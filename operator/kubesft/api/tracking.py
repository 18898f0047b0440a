"""Experiment tracking: where a run's parameters, metrics and outputs are logged.

TensorBoard event files are always written next to `metrics.jsonl` in the output
directory; an MLflow tracking server is used when `spec.tracking.mlflow` is set.
"""

from __future__ import annotations

from pydantic import Field

from kubesft.api.base import MAX_NAME, MAX_STRING, APIModel, SecretRef, StatusModel

MLFLOW_CREDENTIAL_KEYS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
"""Keys of `credentialsSecretRef` passed to the trainer (each optional), as MLflow reads them."""


class MLflowTracking(APIModel):
    """An MLflow tracking server: parameters (the spec), metrics per step, the output."""

    tracking_uri: str = Field(pattern=r"^https?://\S+$", max_length=MAX_STRING)
    """The server's URL, e.g. `http://mlflow.mlflow.svc:5000`."""
    experiment: str = Field(default="kubesft", min_length=1, max_length=MAX_NAME)
    """Experiment name; created when missing."""
    run_name: str | None = Field(default=None, max_length=MAX_NAME)
    """Run name; defaults to `<namespace>/<SFTJob name>`."""
    credentials_secret_ref: SecretRef | None = None
    """Secret with `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` or
    `MLFLOW_TRACKING_TOKEN` (each key optional)."""
    log_artifacts: bool = True
    """Upload the trained adapter or model, eval.json, loss.png and config.json as run
    artifacts; false records only the output location (tag `kubesft.output`)."""


class Tracking(APIModel):
    """Experiment trackers a run logs to, besides the TensorBoard files it always writes."""

    mlflow: MLflowTracking | None = None


class TrackingStatus(StatusModel):
    """Where this run is in the experiment trackers."""

    mlflow_run_id: str | None = None
    mlflow_experiment_id: str | None = None
