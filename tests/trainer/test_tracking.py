"""Experiment tracking: TensorBoard files read back with tensorboard's own reader, and a
real MLflow server (started here on loopback) read back with MLflow's client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.report import ExitCode
from kubesft_trainer import cli
from kubesft_trainer.report import read_metrics
from kubesft_trainer.tracking import scalars
from tests.support.mlflow_server import mlflow_server
from tests.support.sft_run import run_trainer, trainer_config, write_config, write_prepared_dataset

STEPS = 4


def series(records: list[dict[str, Any]], kind: str, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if r["type"] == kind and r.get(key) is not None]


def test_scalar_names_cover_train_eval_and_eval_per_dataset() -> None:
    train = {"type": "train", "step": 3, "trainLoss": 2.5, "learningRate": 1e-3, "gradNorm": 0.7,
             "tokensPerSecond": 900.0, "etaSeconds": 12, "totalSteps": 9}  # fmt: skip
    assert scalars(train) == {
        "train/loss": 2.5,
        "train/learning_rate": 1e-3,
        "train/grad_norm": 0.7,
        "train/tokens_per_second": 900.0,
    }
    evaluation = {"type": "eval", "step": 3, "evalLoss": 1.5, "tokenAccuracy": 0.5, "tokens": 80,
                  "datasets": {"chat": {"evalLoss": 1.25}}}  # fmt: skip
    assert scalars(evaluation) == {
        "eval/loss": 1.5,
        "eval/token_accuracy": 0.5,
        "eval/chat/loss": 1.25,
    }
    assert scalars({"type": "checkpoint", "step": 3, "path": "x"}) == {}


def test_tensorboard_event_files_hold_every_step_of_metrics_jsonl(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_prepared_dataset(tmp_path / "data")
    output = tmp_path / "out"
    config = trainer_config(tiny_model_dir, data, output, evaluation={"everySteps": 2})
    assert cli.main(["train", "--config", str(write_config(tmp_path / "c.json", config))]) == 0

    events = EventAccumulator(str(output)).Reload()
    records = read_metrics(output)
    for tag, kind, key in (
        ("train/loss", "train", "trainLoss"),
        ("train/learning_rate", "train", "learningRate"),
        ("train/grad_norm", "train", "gradNorm"),
        ("train/tokens_per_second", "train", "tokensPerSecond"),
        ("eval/loss", "eval", "evalLoss"),
        ("eval/token_accuracy", "eval", "tokenAccuracy"),
    ):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = series(records, kind, key)
        assert [s for s, _ in logged] == [s for s, _ in expected], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-5), tag
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))
    assert [e.step for e in events.Scalars("eval/loss")] == [0, 2, 4]


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def test_mlflow_run_holds_the_spec_each_step_and_the_output(
    tiny_model_dir: Path, tmp_path: Path, mlflow_url: str
) -> None:
    from mlflow import MlflowClient

    data = write_prepared_dataset(tmp_path / "data")
    output = tmp_path / "out"
    tracking = {"mlflow": {"trackingUri": mlflow_url, "experiment": "kubesft-test"}}
    config = trainer_config(tiny_model_dir, data, output, tracking=tracking)
    config["runtime"] |= {"jobName": "tracked", "namespace": "team-a"}
    result = run_trainer(write_config(tmp_path / "c.json", config))
    assert result.returncode == ExitCode.OK, result.stderr[-3000:]

    summary = json.loads((tmp_path / "out.termination-log").read_text())
    run_id = summary["tracking"]["mlflowRunId"]
    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name("kubesft-test")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.info.run_name == "team-a/tracked"
    assert summary["tracking"]["mlflowExperimentId"] == experiment.experiment_id
    params = run.data.params
    assert params["training.learningRate"] == "0.01" and params["method.lora.r"] == "4"
    assert params["model.name"] == "tiny-llama" and params["training.maxSteps"] == str(STEPS)
    assert run.data.tags["kubesft.job"] == "tracked"

    losses = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    expected = series(read_metrics(output), "train", "trainLoss")
    assert [s for s, _ in losses] == [s for s, _ in expected] == list(range(1, STEPS + 1))
    assert [v for _, v in losses] == pytest.approx([v for _, v in expected])
    assert {m.step for m in client.get_metric_history(run_id, "eval/loss")} == {0, STEPS}

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model", "eval.json", "loss.png", "spec.json"} <= artifacts
    model_files = {Path(a.path).name for a in client.list_artifacts(run_id, "model")}
    assert "adapter_model.safetensors" in model_files
    assert run.data.tags["kubesft.output"] == str(output / "model")
