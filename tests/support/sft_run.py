"""A tiny prepared dataset, a trainer config and a way to run the trainer CLI, for tests.

The config trains the tiny Llama of `tiny_model.py` in fp32 on CPU with small settings, so
a whole run (tokenize, train, eval, checkpoint, save) takes seconds.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support import trainer_faults
from tests.support.controlplane import free_port
from tests.support.tiny_model import WORDS

REPO = Path(__file__).resolve().parents[2]


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def write_prepared_dataset(directory: Path, train: int = 16, evals: int = 4, seed: int = 0) -> Path:
    """train.jsonl and eval.jsonl of chat examples of varied lengths, as `prepare` writes."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("eval", evals)):
        with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for _ in range(count):
                messages = [
                    {"role": "user", "content": sentence(rng, 2, 8)},
                    {"role": "assistant", "content": sentence(rng, 1, 10)},
                ]
                fh.write(json.dumps({"messages": messages}) + "\n")
    return directory


def write_text_dataset(
    directory: Path, train: int, evals: int, seed: int = 1, words: Sequence[str] = WORDS
) -> Path:
    """Prepared `format: text` rows (general text, as replay or a retention set)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("eval", evals)):
        rows = [{"text": " ".join(rng.choices(words, k=rng.randint(8, 20)))} for _ in range(count)]
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


BASE_SPEC: dict[str, Any] = {
    "model": {"name": "tiny-llama", "source": "pvc", "pvc": {"claimName": "models"}},
    "dataset": {"name": "tiny"},
    "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    "training": {
        "maxSteps": 4,
        "learningRate": 1e-2,
        "warmupRatio": 0.0,
        "microBatchSize": 1,
        "gradientAccumulation": 2,
        "maxSeqLength": 64,
        "precision": "fp32",
        "seed": 7,
    },
    "evaluation": {"samples": 1, "maxNewTokens": 4},
    "checkpoints": {"everySteps": 1000},
    "output": {"pvc": {"claimName": "out"}},
}


Mixture = Mapping[str, tuple[Path, float]]
"""Member SFTDataset name -> (its prepared folder, its weight)."""


def trainer_config(
    model_dir: Path,
    dataset_dir: Path | Mixture,
    output_dir: Path,
    *,
    retention: tuple[str, Path] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A TrainerConfig document; each keyword updates that spec section (`training={...}`).

    A value of None removes the key, e.g. `method={"type": "full", "lora": None}`.
    `dataset_dir` is one prepared folder (spec.dataset), or a mixture (spec.datasets);
    `retention` (name, folder) sets spec.evaluation.retention.name and its runtime folder.
    """
    spec = copy.deepcopy(BASE_SPEC)
    for name, values in sections.items():
        merged = {**spec.get(name, {}), **values}
        spec[name] = {key: value for key, value in merged.items() if value is not None}
    if isinstance(dataset_dir, Mapping):
        del spec["dataset"]
        spec["datasets"] = [{"name": n, "weight": w} for n, (_, w) in dataset_dir.items()]
        datasets = [{"name": n, "dir": str(d), "weight": w} for n, (d, w) in dataset_dir.items()]
    else:
        datasets = [{"name": spec["dataset"]["name"], "dir": str(dataset_dir)}]
    runtime: dict[str, Any] = {
        "outputDir": str(output_dir),
        "datasets": datasets,
        "modelPath": str(model_dir),
        "terminationLog": str(output_dir.parent / f"{output_dir.name}.termination-log"),
        "progressIntervalSeconds": 0,
    }
    if retention is not None:
        name, folder = retention
        evaluation = spec.setdefault("evaluation", {})
        evaluation["retention"] = {**evaluation.get("retention", {}), "name": name}
        runtime["retention"] = {"name": name, "dir": str(folder)}
    return {"spec": spec, "runtime": runtime}


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def trainer_env(**extra: str) -> dict[str, str]:
    """Environment for a trainer subprocess: the repo importable, one thread, no hub.

    The test-only fault injection (`trainer_faults`) is first on the path; it acts only
    when one of its variables is set.
    """
    path = [trainer_faults.FOLDER, REPO / "operator", REPO / "trainer-image", REPO]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
    return env


def trainer_command(config_path: Path, nproc: int = 1) -> list[str]:
    """`python -m kubesft_trainer train`, under torchrun on localhost when `nproc` > 1."""
    if nproc == 1:
        return [sys.executable, "-m", "kubesft_trainer", "train", "--config", str(config_path)]
    return [
        *(sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"),
        *("--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={free_port()}"),
        *("-m", "kubesft_trainer", "train", "--config", str(config_path)),
    ]


def run_trainer(
    config_path: Path, *, nproc: int = 1, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        trainer_command(config_path, nproc),
        env=trainer_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_trainer(
    config_path: Path, log: Path, *, nproc: int = 1, new_session: bool = False, **env: str
) -> subprocess.Popen[bytes]:
    """The trainer CLI in the background, stdout and stderr into `log`; `new_session` gives
    it its own process group, so that one kill reaches every rank."""
    with log.open("wb") as out:
        return subprocess.Popen(
            trainer_command(config_path, nproc),
            env=trainer_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def wait_while_running(
    process: subprocess.Popen[bytes],
    log: Path,
    what: str,
    check: Callable[[], bool] | None = None,
    timeout: float = 240.0,
) -> None:
    """Until `check()` holds (default: `what` is in the log); fails with the log's tail when
    the trainer exits first or `timeout` seconds pass."""
    done = check or (lambda: what in log.read_text(errors="replace"))
    deadline = time.monotonic() + timeout
    while not done():
        tail = log.read_text(errors="replace")[-3000:]
        assert process.poll() is None, f"trainer exited before {what}:\n{tail}"
        assert time.monotonic() < deadline, f"no {what} in time:\n{tail}"
        time.sleep(0.1)
