"""An output directory belongs to one run: a second run there is refused before the model
loads, the same run resumes, and what it writes is readable by other users of the volume.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.report import ExitCode
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer import run_identity
from kubesft_trainer.run_identity import OutputInUse, RunIdentity
from tests.support.s3_server import S3Endpoint
from tests.support.sft_run import (
    trainer_command,
    trainer_config,
    trainer_env,
    write_config,
    write_prepared_dataset,
)

CHECKPOINTS = {"everySteps": 2, "keep": 3, "keepBest": False}


def job_config(tmp_path: Path, model_dir: Path, uid: str, **sections: Any) -> Path:
    data = write_prepared_dataset(tmp_path / "data")
    config = trainer_config(model_dir, data, tmp_path / "out", checkpoints=CHECKPOINTS, **sections)
    config["runtime"].update(jobName=f"job-{uid}", namespace="team", jobUid=uid)
    config["runtime"]["terminationLog"] = str(tmp_path / f"{uid}.termination-log")
    return write_config(tmp_path / f"{uid}.json", config)


def train(config: Path) -> subprocess.CompletedProcess[str]:
    """The trainer CLI under the usual container umask (022)."""
    return subprocess.run(
        trainer_command(config),
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )


def termination(tmp_path: Path, uid: str) -> dict[str, Any]:
    return dict(json.loads((tmp_path / f"{uid}.termination-log").read_text()))


def test_second_run_on_an_output_is_refused_before_the_model_loads(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = train(job_config(tmp_path, tiny_model_dir, "uid-first"))
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = (tmp_path / "out" / "metrics.jsonl").read_bytes()

    second = train(
        job_config(tmp_path, tiny_model_dir, "uid-second", training={"learningRate": 5e-3})
    )

    assert second.returncode == ExitCode.INVALID, second.stderr[-3000:]
    assert "train:" not in second.stdout  # refused before tokenizing, let alone loading weights
    summary = termination(tmp_path, "uid-second")
    assert summary["reason"] == "OutputInUse"
    for part in ("spec.output.pvc pvc://out/", "SFTJob team/job-uid-first", "uid-first"):
        assert part in summary["message"], summary["message"]
    assert "Traceback" not in second.stderr
    assert (tmp_path / "out" / "metrics.jsonl").read_bytes() == metrics  # nothing touched
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["uid"] == "uid-first"


def test_same_run_resumes_its_own_checkpoints(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = job_config(tmp_path, tiny_model_dir, "uid-same")
    assert train(config).returncode == 0
    again = train(config)  # a retried pod of the same SFTJob
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout
    assert "uid-same" in (tmp_path / "out" / "checkpoints" / "step-4" / "run.json").read_text()


def test_checkpoint_of_another_run_is_not_resumed(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = TrainerConfig.model_validate_json(
        job_config(tmp_path, tiny_model_dir, "uid-b").read_text()
    )
    run = RunIdentity.of(config)
    step = tmp_path / "step-2"
    step.mkdir()
    other = {**run.document(), "uid": "uid-a", "jobName": "old"}
    (step / run_identity.RUN_FILE).write_text(json.dumps(other))
    with pytest.raises(OutputInUse, match=r"SFTJob team/old \(uid uid-a"):
        run_identity.require_own_checkpoint(run, step, where="spec.output.pvc.path")
    (step / run_identity.RUN_FILE).unlink()  # written before run records existed
    with pytest.raises(OutputInUse, match="older kubesft"):
        run_identity.require_own_checkpoint(run, step, where="spec.output.pvc.path")


def test_without_a_uid_a_run_is_its_fingerprints(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = TrainerConfig.model_validate_json(job_config(tmp_path, tiny_model_dir, "").read_text())
    run = RunIdentity.of(config)
    assert run.same_run(run.document())
    changed = config.model_copy(deep=True)
    changed.spec.training.learning_rate = 0.5
    assert not RunIdentity.of(changed).same_run(run.document())
    resumed = config.model_copy(deep=True)
    resumed.spec.suspend, resumed.spec.active_deadline_seconds = True, 60  # mutable: same run
    assert RunIdentity.of(resumed).same_run(run.document())


def test_weights_and_checkpoints_are_readable_by_the_group_and_others(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = train(
        job_config(tmp_path, tiny_model_dir, "uid-perm", method={"type": "full", "lora": None})
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    weights = [
        out / "model" / "model.safetensors",
        out / "checkpoints" / "step-4" / "model.safetensors",
    ]
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert set(weights) <= set(files)
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert {name: mode for name, mode in modes.items() if mode != "0o644"} == {}


def test_s3_prefix_of_another_run_is_refused(
    tiny_model_dir: Path, tmp_path: Path, s3_env: S3Endpoint
) -> None:
    from tests.trainer.test_s3 import new_bucket

    _, bucket = new_bucket()
    url = f"s3://{bucket}/runs/tiny"
    output = {"pvc": None, "url": url, "credentialsSecretRef": {"name": "s3"}}
    first = train(job_config(tmp_path, tiny_model_dir, "uid-s3a", output=output))
    assert first.returncode == 0, first.stderr[-3000:]
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = train(job_config(second_dir, tiny_model_dir, "uid-s3b", output=output))
    assert second.returncode == ExitCode.INVALID, second.stderr[-3000:]
    message = termination(second_dir, "uid-s3b")["message"]
    assert f"spec.output.url {url}" in message and "uid-s3a" in message, message
    assert not (second_dir / "out" / "checkpoints").exists()  # nothing downloaded
