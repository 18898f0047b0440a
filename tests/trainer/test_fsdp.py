"""Full fine-tuning sharded over two ranks (FSDP2 on gloo) trains like one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from kubesft_trainer import checkpoint
from kubesft_trainer.sharding import SHARDED_DIR
from tests.support.sft_run import (
    run_trainer,
    start_trainer,
    trainer_config,
    wait_while_running,
    write_config,
    write_prepared_dataset,
)
from tests.support.trainer_faults import SLEEP as TEST_SLEEP_AFTER_STEP

FULL = {"type": "full", "lora": None}
GLOO = {"GLOO_SOCKET_IFNAME": "lo"}


def logged(output_dir: Path) -> list[tuple[int, str, float, float | None]]:
    """(step, kind, loss, grad norm) of each train step and eval in metrics.jsonl."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").open()]
    return [
        (r["step"], r["type"], r.get("trainLoss") or r.get("evalLoss"), r.get("gradNorm"))
        for r in records
        if r["type"] in ("train", "eval")
    ]


def config_for(tmp_path: Path, model_dir: Path, name: str, **training) -> tuple[Path, Path]:
    data = write_prepared_dataset(tmp_path / "data")
    output = tmp_path / name
    # maxSeqLength 32: one example per bin, so ranks see different label-token counts.
    settings = {"maxSteps": 4, "maxSeqLength": 32, "gradientCheckpointing": True} | training
    config = trainer_config(
        model_dir,
        data,
        output,
        method=FULL,
        training=settings,
        checkpoints={"everySteps": 2, "keep": 3},
    )
    # One SFTJob object per output: a resume with other settings (world size, strategy) is
    # the same run continuing, which run binding allows by uid (and refuses across runs).
    config["runtime"]["jobUid"] = f"uid-{name}"
    return write_config(tmp_path / f"{name}.json", config), output


def train(config: Path, nproc: int, **env: str) -> subprocess.CompletedProcess[str]:
    result = run_trainer(config, nproc=nproc, timeout=600, **GLOO, **env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def assert_same_run(expected: Path, actual: Path) -> None:
    want = load_file(expected / "model" / "model.safetensors")
    got = load_file(actual / "model" / "model.safetensors")
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    # The grad norm also catches a uniform gradient scale, to which AdamW is nearly blind.
    for one, two in zip(logged(expected), logged(actual), strict=True):
        assert one[:2] == two[:2]
        for a, b in zip(one[2:], two[2:], strict=True):
            assert a == b or abs(a - b) < 1e-5, (one, two)


def test_fsdp_two_ranks_equal_one_process(tiny_model_dir, tmp_path) -> None:
    one_config, one = config_for(tmp_path, tiny_model_dir, "one", gradientAccumulation=2)
    two_config, two = config_for(tmp_path, tiny_model_dir, "two", gradientAccumulation=1)
    train(one_config, nproc=1)
    result = train(two_config, nproc=2)

    assert json.loads((two / "config.json").read_text())["plan"]["world_size"] == 2
    assert json.loads((two / "preflight.json").read_text())["memory"]["strategy"] == "fsdp"
    step = two / "checkpoints" / "step-2"
    assert (step / SHARDED_DIR / ".metadata").exists() and not (step / "optimizer.pt").exists()
    assert (one / "checkpoints" / "step-2" / "model.safetensors").exists()  # one GPU: replica
    assert_same_run(one, two)
    # The consolidated output loads as a plain model, tokenizer beside it.
    LlamaForCausalLM.from_pretrained(two / "model")
    assert (two / "model" / "tokenizer.json").exists()
    assert "Traceback" not in result.stderr


def kill_after_step(config: Path, log: Path, step: int, nproc: int) -> None:
    env = {**GLOO, TEST_SLEEP_AFTER_STEP: str(step)}
    process = start_trainer(config, log, nproc=nproc, new_session=True, **env)
    try:
        wait_while_running(process, log, f"sleeping after step {step}", timeout=400)
    finally:
        # SIGKILL, no cleanup of any kind: the ranks first (torchrun starts each in its own
        # session, so they outlive a kill of the launcher's group), then the launcher.
        for pid in descendants(process.pid):
            os.kill(pid, signal.SIGKILL)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def descendants(root: int) -> list[int]:
    """Every process below `root`, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_sharded_checkpoint_killed_and_resumed_equals_a_straight_run(
    tiny_model_dir, tmp_path
) -> None:
    straight_config, straight = config_for(tmp_path, tiny_model_dir, "straight")
    resumed_config, resumed = config_for(tmp_path, tiny_model_dir, "resumed")
    kill_after_step(resumed_config, tmp_path / "killed.log", step=2, nproc=2)
    assert (resumed / "checkpoints" / "step-2" / checkpoint.COMPLETE).exists()

    result = train(resumed_config, nproc=2)
    assert "(step 2)" in result.stdout
    train(straight_config, nproc=2)
    assert_same_run(straight, resumed)


def test_sharded_checkpoint_resumes_on_another_world_size(tiny_model_dir, tmp_path) -> None:
    two_ranks = {"gradientAccumulation": 1}
    straight_config, straight = config_for(tmp_path, tiny_model_dir, "straight", **two_ranks)
    resumed_config, resumed = config_for(tmp_path, tiny_model_dir, "resumed", **two_ranks)
    kill_after_step(resumed_config, tmp_path / "killed.log", step=2, nproc=2)

    # One process with twice the accumulation keeps the global batch: the same run.
    document = json.loads(resumed_config.read_text())
    document["spec"]["training"]["gradientAccumulation"] = 2
    resumed_config.write_text(json.dumps(document))
    result = train(resumed_config, nproc=1)
    assert "(step 2)" in result.stdout
    train(straight_config, nproc=2)
    assert_same_run(straight, resumed)


def test_replicated_checkpoint_resumes_sharded(tiny_model_dir, tmp_path) -> None:
    straight_config, straight = config_for(tmp_path, tiny_model_dir, "straight")
    resumed_config, resumed = config_for(tmp_path, tiny_model_dir, "resumed", parallelism="ddp")
    kill_after_step(resumed_config, tmp_path / "killed.log", step=2, nproc=2)
    step = resumed / "checkpoints" / "step-2"
    assert (step / "model.safetensors").exists() and (step / SHARDED_DIR).is_dir()

    document = json.loads(resumed_config.read_text())
    document["spec"]["training"]["parallelism"] = "auto"  # fsdp on two ranks
    resumed_config.write_text(json.dumps(document))
    result = train(resumed_config, nproc=2)
    assert "(step 2)" in result.stdout
    assert json.loads((resumed / "preflight.json").read_text())["memory"]["strategy"] == "fsdp"
    train(straight_config, nproc=2)
    assert_same_run(straight, resumed)
