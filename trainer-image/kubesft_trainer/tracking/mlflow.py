"""MLflow: the spec as parameters, each step's scalars as metrics, the output as artifacts.

Talks to the tracking server through `MlflowClient` (explicit run ids, no process-global
active run). A retried pod continues the same MLflow run: its id is kept in the output
directory beside the checkpoints it resumes from.
"""

from __future__ import annotations

import atexit
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubesft.api.runtime import TrainerConfig
from kubesft.api.tracking import MLflowTracking
from kubesft_trainer.tracking.base import scalars

RUN_FILE = "mlflow_run.json"
"""{"runId", "experimentId"} of this output directory's MLflow run, for resumed attempts."""
FLUSH_SECONDS = 15.0
"""Most time buffered train metrics wait; eval and checkpoint records flush at once."""
ARTIFACT_FILES = ("eval.json", "loss.png", "config.json", "metrics.jsonl")


class MLflowTracker:
    """One MLflow run per SFTJob output directory."""

    def __init__(self, settings: MLflowTracking, config: TrainerConfig, output_dir: Path) -> None:
        """Create (or, on resume, reopen) the run and log the spec as its parameters.

        Raises the client's error when the server cannot be reached or refuses: a wrong
        `trackingUri` or credentials should stop the run before any GPU time is spent.
        """
        from mlflow import MlflowClient

        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.tracking_uri)
        self._buffer: list[Any] = []
        self._flushed = time.monotonic()
        self._done = False
        run_file = output_dir / RUN_FILE
        if run_file.exists():
            saved = json.loads(run_file.read_text(encoding="utf-8"))
            self.run_id, self.experiment_id = saved["runId"], saved["experimentId"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.experiment_id = self._experiment_id(settings.experiment)
            runtime = config.runtime
            run = self.client.create_run(
                self.experiment_id,
                run_name=settings.run_name or f"{runtime.namespace or 'local'}/{runtime.job_name}",
                tags=_tags(config),
            )
            self.run_id = run.info.run_id
            self._log_spec(config)
            doc = {"runId": self.run_id, "experimentId": self.experiment_id}
            run_file.write_text(json.dumps(doc) + "\n", encoding="utf-8")
        atexit.register(self.close)  # a crashed attempt is marked FAILED, not left RUNNING

    def write(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        millis = int(time.time() * 1000)
        step = int(record["step"])
        self._buffer += [Metric(k, v, millis, step) for k, v in scalars(record).items()]
        due = time.monotonic() - self._flushed >= FLUSH_SECONDS
        if record.get("type") != "train" or due:
            self._flush()

    def finish(self, output_dir: Path, final: Mapping[str, Any]) -> None:
        """Flush, attach the output (artifacts or its location), and end the run FINISHED."""
        self._flush()
        output = str((final.get("output") or {}).get("path", ""))
        self.client.set_tag(self.run_id, "kubesft.output", output)
        if self.settings.log_artifacts:
            local = Path(output) if output and Path(output).is_dir() else output_dir / "model"
            if local.is_dir():
                self.client.log_artifacts(self.run_id, str(local), artifact_path=local.name)
            for name in ARTIFACT_FILES:
                if (output_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(output_dir / name))
        self.client.set_terminated(self.run_id, "FINISHED")
        self._done = True

    def status(self) -> dict[str, Any]:
        return {"mlflowRunId": self.run_id, "mlflowExperimentId": self.experiment_id}

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._flush()
        finally:
            self.client.set_terminated(self.run_id, "FAILED")

    def _flush(self) -> None:
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        batch, self._buffer = self._buffer, []
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[start : start + MAX_METRICS_PER_BATCH])
        self._flushed = time.monotonic()

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # another job created it first
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def _log_spec(self, config: TrainerConfig) -> None:
        """Each spec field as a dotted parameter; the whole spec also as `spec.json`, since
        MLflow caps parameter values (an inline chat template can exceed the cap)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        spec = config.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
        params = [
            Param(
                key,
                value
                if len(value) <= MAX_PARAM_VAL_LENGTH
                else value[: MAX_PARAM_VAL_LENGTH - 1] + "…",
            )
            for key, value in flatten_params(spec).items()
        ]
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(
                self.run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH]
            )
        self.client.log_dict(self.run_id, spec, "spec.json")


def flatten_params(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"training": {"learningRate": 0.001}}` → `{"training.learningRate": "0.001"}`;
    lists are kept whole as JSON (`method.lora.targetModules`)."""
    out: dict[str, str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten_params(value, f"{name}.")
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value)
        else:
            out[name] = str(value)
    return out


def _tags(config: TrainerConfig) -> dict[str, str]:
    spec, runtime = config.spec, config.runtime
    tags = {
        "kubesft.model": spec.model.name,
        "kubesft.method": spec.method.type,
        "kubesft.dataset": ",".join(spec.training_dataset_names()),
    }
    if spec.evaluation.retention is not None:
        tags["kubesft.retentionDataset"] = spec.evaluation.retention.name
    if runtime.job_name:
        tags["kubesft.job"] = runtime.job_name
    if runtime.namespace:
        tags["kubesft.namespace"] = runtime.namespace
    if runtime.dataset_fingerprint:
        tags["kubesft.datasetFingerprint"] = runtime.dataset_fingerprint
    return tags
