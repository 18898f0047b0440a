"""Runs that survive: SIGTERM checkpoints at the step boundary, hangs and NaNs end with reasons."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from kubesft.api.report import ExitCode
from kubesft_trainer import checkpoint
from kubesft_trainer.health import HangWatchdog, NumericalInstability, check_finite
from tests.support.sft_run import (
    run_trainer,
    start_trainer,
    trainer_config,
    wait_while_running,
    write_config,
    write_prepared_dataset,
)
from tests.support.trainer_faults import NAN, SLOW, STALL

TRAINING = {"maxSteps": 8, "gradientAccumulation": 2}
METHOD = {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}
NO_CHECKPOINTS = {"everySteps": 1000}


def train_steps(output_dir: Path) -> list[int]:
    path = output_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["step"] for r in records if r["type"] == "train"]


def termination(output_dir: Path) -> dict[str, object]:
    path = output_dir.parent / f"{output_dir.name}.termination-log"
    return dict(json.loads(path.read_text()))


def assert_same_adapter(expected_dir: Path, actual_dir: Path) -> None:
    expected = load_file(expected_dir / "model" / "adapter_model.safetensors")
    actual = load_file(actual_dir / "model" / "adapter_model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def configs(tmp_path: Path, model_dir: Path, *names: str, **sections) -> dict[str, Path]:
    data = write_prepared_dataset(tmp_path / "data")
    sections = {"training": TRAINING, "method": METHOD, "checkpoints": NO_CHECKPOINTS, **sections}
    return {
        name: write_config(
            tmp_path / f"{name}.json",
            trainer_config(model_dir, data, tmp_path / name, **sections),
        )
        for name in names
    }


def test_sigterm_mid_run_checkpoints_that_step_and_the_resumed_run_equals_a_straight_run(
    tiny_model_dir, tmp_path
) -> None:
    paths = configs(tmp_path, tiny_model_dir, "straight", "preempted")
    out = tmp_path / "preempted"
    log = tmp_path / "preempted.log"
    process = start_trainer(paths["preempted"], log, **{SLOW: "0.5"})
    wait_while_running(process, log, "step 2", lambda: len(train_steps(out)) >= 2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == ExitCode.PREEMPTED, log.read_text()[-3000:]

    stopped_at = train_steps(out)[-1]
    assert 2 <= stopped_at < TRAINING["maxSteps"]
    assert [r.step for r in checkpoint.list_checkpoints(out)] == [stopped_at]
    message = termination(out)
    assert message["reason"] == "Preempted" and f"after step {stopped_at}" in str(message)
    assert message["checkpoints"][0]["step"] == stopped_at  # the report travels with it

    resumed = run_trainer(paths["preempted"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {stopped_at})" in resumed.stdout
    straight = run_trainer(paths["straight"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert train_steps(out) == list(range(1, TRAINING["maxSteps"] + 1))  # none twice or lost
    assert_same_adapter(tmp_path / "straight", out)


def test_a_stalled_run_is_ended_by_the_watchdog_with_the_hang_reason(
    tiny_model_dir, tmp_path
) -> None:
    timeout = 8
    training = {**TRAINING, "hangTimeoutSeconds": timeout}
    paths = configs(tmp_path, tiny_model_dir, "stalled", training=training)
    out = tmp_path / "stalled"

    result = run_trainer(paths["stalled"], timeout=240, **{STALL: "2"})

    assert result.returncode == ExitCode.HUNG, result.stderr[-3000:]
    message = termination(out)
    assert message["reason"] == "Hung" and message["phase"] == "Failed"
    assert "after step 2" in str(message["message"])
    assert "spec.training.hangTimeoutSeconds" in str(message["message"])
    assert message["progress"]["step"] == 2  # the report so far, written by the watchdog
    assert "Traceback" not in result.stderr
    assert train_steps(out) == [1, 2]


def test_a_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_model_dir, tmp_path
) -> None:
    paths = configs(tmp_path, tiny_model_dir, "diverged", checkpoints={"everySteps": 1})
    out = tmp_path / "diverged"

    result = run_trainer(paths["diverged"], **{NAN: "3"})

    assert result.returncode == ExitCode.NUMERICAL_INSTABILITY, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = termination(out)
    assert message["reason"] == "NumericalInstability" and message["phase"] == "Failed"
    assert "step 4" in str(message["message"])
    records = checkpoint.list_checkpoints(out)
    assert [r.step for r in records] == [1, 2, 3]  # step 4's update reached none
    weights = load_file(records[-1].path / "adapter_model.safetensors")
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())


def test_sigterm_to_one_of_two_ranks_yields_one_consistent_checkpoint(
    tiny_model_dir, tmp_path
) -> None:
    paths = configs(tmp_path, tiny_model_dir, "straight", "preempted")
    out = tmp_path / "preempted"
    log = tmp_path / "preempted.log"
    launcher = start_trainer(paths["preempted"], log, nproc=2, **{SLOW: "0.5"})
    wait_while_running(launcher, log, "step 2", lambda: len(train_steps(out)) >= 2)
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True)]
    rank1 = next(p for p in workers if p.environ().get("RANK") == "1")
    os.kill(rank1.pid, signal.SIGTERM)  # one node drained; the other rank is not signalled
    assert launcher.wait(timeout=120) != 0
    assert "SIGTERM: checkpointing after the current step" in log.read_text()

    stopped_at = train_steps(out)[-1]
    assert [r.step for r in checkpoint.list_checkpoints(out)] == [stopped_at]
    assert stopped_at < TRAINING["maxSteps"]

    resumed = run_trainer(paths["preempted"], nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run_trainer(paths["straight"], nproc=2)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert train_steps(out) == list(range(1, TRAINING["maxSteps"] + 1))
    assert_same_adapter(tmp_path / "straight", out)


def test_watchdog_fires_once_after_the_timeout_without_a_beat() -> None:
    now = [0.0]
    fired: list[str] = []
    done = threading.Event()

    def on_hang(message: str) -> None:
        fired.append(message)
        done.set()

    watchdog = HangWatchdog(30, on_hang, clock=lambda: now[0], poll_s=0.01)
    watchdog.start(step=4)
    now[0] = 29.0
    watchdog.beat(5)  # a step finished: the clock starts again
    now[0] = 58.0
    time.sleep(0.1)
    assert not fired
    now[0] = 60.0
    assert done.wait(5)
    watchdog.stop()
    assert len(fired) == 1 and "after step 5" in fired[0] and "31 s" in fired[0]


@pytest.mark.parametrize(
    ("loss", "norm", "fp16", "stops"),
    [
        (1.0, 2.0, False, False),
        (math.nan, 2.0, False, True),
        (math.inf, None, True, True),
        (1.0, math.inf, False, True),
        (1.0, math.inf, True, False),  # fp16: the loss scaler skips an overflowing step
    ],
)
def test_non_finite_loss_or_gradient_norm_stops(loss, norm, fp16, stops) -> None:
    if stops:
        with pytest.raises(NumericalInstability, match="step 7"):
            check_finite(7, loss, norm, fp16=fp16)
    else:
        check_finite(7, loss, norm, fp16=fp16)
