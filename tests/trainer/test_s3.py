"""s3:// sources and outputs through a real S3 API on loopback (tests/support/s3_server.py).

An SFTJob with `output.url` trains on scratch that dies with its pod, so what matters is
what reaches the bucket: complete checkpoints while training, results before Succeeded,
and a fresh pod resuming from the bucket alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.dataset import SFTDatasetSpec
from kubesft.api.report import ExitCode
from kubesft_trainer import cli
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.s3 import s3_filesystem
from kubesft_trainer.sources import read_source
from tests.support import trainer_faults
from tests.support.s3_server import S3Endpoint
from tests.support.sft_run import (
    trainer_command,
    trainer_config,
    trainer_env,
    write_config,
    write_prepared_dataset,
)


def new_bucket() -> tuple[Any, str]:
    """A fresh bucket on the endpoint of the current AWS_* environment."""
    fs = s3_filesystem("test")
    bucket = f"kubesft-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    return fs, bucket


def s3_job_config(tmp_path: Path, model_dir: Path, url: str, output: str = "out") -> Path:
    data = write_prepared_dataset(tmp_path / "data")
    config = trainer_config(
        model_dir,
        data,
        tmp_path / output,
        output={"pvc": None, "url": url, "credentialsSecretRef": {"name": "s3"}},
        checkpoints={"everySteps": 2, "keep": 1, "keepBest": False},
    )
    return write_config(tmp_path / f"{output}.json", config)


def test_output_url_gets_checkpoints_and_results_and_status_names_them(
    tiny_model_dir: Path, tmp_path: Path, s3_env: S3Endpoint
) -> None:
    fs, bucket = new_bucket()
    url = f"s3://{bucket}/runs/tiny"
    config = s3_job_config(tmp_path, tiny_model_dir, url)

    assert cli.main(["train", "--config", str(config)]) == ExitCode.OK

    keys = {key.removeprefix(f"{bucket}/runs/tiny/") for key in fs.find(bucket)}
    for name in (
        "model/adapter_model.safetensors",
        "model/adapter_config.json",
        "model/tokenizer.json",
        "model/chat_template.jinja",
        "eval.json",
        "metrics.jsonl",
        "loss.png",
        "config.json",
        "checkpoints/step-4/COMPLETE",
        "checkpoints/step-4/optimizer.pt",
    ):
        assert name in keys, (name, sorted(keys))
    assert not any(k.startswith("checkpoints/step-2/") for k in keys)  # pruned there too
    assert ".kubesft-write-check" not in keys
    summary = json.loads((tmp_path / "out.termination-log").read_text())
    assert summary["output"] == {"path": f"{url}/model", "kind": "adapter"}
    assert [c["path"] for c in summary["checkpoints"]] == [f"{url}/checkpoints/step-4"]
    assert f"output in {url}/model" in summary["message"]


def test_a_fresh_pod_resumes_from_the_bucket(
    tiny_model_dir: Path, tmp_path: Path, s3_env: S3Endpoint
) -> None:
    """First pod: killed after the step-2 checkpoint. Second pod: empty scratch, resumes."""
    fs, bucket = new_bucket()
    url = f"s3://{bucket}/run"
    first = subprocess.Popen(
        trainer_command(s3_job_config(tmp_path, tiny_model_dir, url, "pod-1")),
        env=trainer_env(**s3_env.env(), **{trainer_faults.SLEEP: "2"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not fs.exists(f"{bucket}/run/checkpoints/step-2/COMPLETE"):
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no step-2 checkpoint in the bucket"
            time.sleep(0.5)
            fs.invalidate_cache()
    finally:
        first.kill()
        first.wait()

    second = subprocess.run(
        trainer_command(s3_job_config(tmp_path, tiny_model_dir, url, "pod-2")),
        env=trainer_env(**s3_env.env()),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert second.returncode == 0, second.stderr[-3000:]
    assert f"restored checkpoint step-2 from {url}" in second.stdout
    assert "resuming from" in second.stdout
    metrics = [json.loads(line) for line in (tmp_path / "pod-2" / "metrics.jsonl").open()]
    steps = [r["step"] for r in metrics if r["type"] == "train"]
    assert steps == [1, 2, 3, 4]  # steps 1-2 came back with the checkpoint
    summary = json.loads((tmp_path / "pod-2.termination-log").read_text())
    assert summary["phase"] == "Succeeded" and summary["progress"]["step"] == 4


def test_output_url_without_a_bucket_fails_before_training_naming_the_field(
    tiny_model_dir: Path, tmp_path: Path, s3_env: S3Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    config = s3_job_config(tmp_path, tiny_model_dir, "s3://no-such-bucket-kubesft/run")

    assert cli.main(["train", "--config", str(config)]) == ExitCode.INVALID

    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert "spec.output.url: cannot write to s3://no-such-bucket-kubesft/run" in err
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_s3_source_is_read_with_the_aws_environment(tmp_path: Path, s3_env: S3Endpoint) -> None:
    fs, bucket = new_bucket()
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
    fs.pipe(f"{bucket}/data/rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    spec = SFTDatasetSpec.model_validate(
        {"source": {"url": {"url": f"s3://{bucket}/data/rows.jsonl"}}}
    )

    read = list(read_source(spec.source, workdir=tmp_path))

    assert [row.value for row in read] == rows


def test_missing_s3_object_is_a_user_error_naming_the_field(
    tmp_path: Path, s3_env: S3Endpoint
) -> None:
    _, bucket = new_bucket()
    spec = SFTDatasetSpec.model_validate({"source": {"url": {"url": f"s3://{bucket}/nope.jsonl"}}})

    with pytest.raises(UserError, match=r"spec\.source\.url: cannot read s3://"):
        list(read_source(spec.source, workdir=tmp_path))
