"""On a CUDA GPU: the half-precision, 4-bit and 8-bit paths that CPU tests cannot reach.

CI has no GPU, so these skip there (the reason says so); they run wherever torch sees a
CUDA device, e.g. `pytest tests/trainer/test_cuda.py` on a lent H100. Each run goes
through the real `python -m kubesft_trainer train` and must learn: the mean train loss
of the last steps falls well below the first step's, on the GPU, in the asked precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.config import Precision
from kubesft_trainer.model import ModelSource, load_model
from tests.support.sft_run import (
    BASE_SPEC,
    run_trainer,
    trainer_config,
    write_config,
    write_prepared_dataset,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

STEPS = 30


def train(tmp_path: Path, model_dir: Path, **sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the trainer CLI for STEPS steps; its train records from metrics.jsonl."""
    data = write_prepared_dataset(tmp_path / "data", train=64, evals=8)
    output = tmp_path / "out"
    training = {"maxSteps": STEPS, "maxSeqLength": 128, **sections.pop("training", {})}
    config = trainer_config(model_dir, data, output, training=training, **sections)
    result = run_trainer(write_config(tmp_path / "config.json", config), timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "out.termination-log").read_text())
    assert summary["phase"] == "Succeeded", summary
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["type"] == "train"]


def assert_learned(records: list[dict[str, Any]]) -> None:
    losses = [r["trainLoss"] for r in records]
    assert len(losses) == STEPS and all(loss is not None for loss in losses), losses
    tail = sum(losses[-5:]) / 5
    assert tail < 0.7 * losses[0], losses
    # Ran on the GPU: the loop reports the peak memory torch allocated there.
    assert all(r["gpuMemoryGiB"] and r["gpuMemoryGiB"] > 0 for r in records), records[-1]


@pytest.mark.parametrize(
    ("method", "precision", "learning_rate"),
    [("full", "bf16", 1e-3), ("lora", "bf16", 1e-2), ("full", "fp16", 1e-3)],
)
def test_half_precision_training_learns(
    tiny_model_dir: Path, tmp_path: Path, method: str, precision: str, learning_rate: float
) -> None:
    lora = {"r": 8, "alpha": 16, "dropout": 0.0} if method == "lora" else None
    records = train(
        tmp_path,
        tiny_model_dir,
        method={"type": method, "lora": lora},
        training={"precision": precision, "learningRate": learning_rate},
    )
    assert_learned(records)


def test_qlora_trains_adapters_on_a_4bit_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    qlora = {"type": "qlora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    records = train(
        tmp_path,
        tiny_model_dir,
        method={**qlora, "qlora": {"quantType": "nf4"}},
        training={"precision": "bf16", "learningRate": 1e-2, "gradientCheckpointing": True},
    )
    assert_learned(records)
    adapter = tmp_path / "out" / "model" / "adapter_model.safetensors"
    assert adapter.exists()


def test_qlora_base_weights_are_4bit_and_frozen(tiny_model_dir: Path) -> None:
    import bitsandbytes as bnb

    spec = dict(BASE_SPEC)
    spec["method"] = {"type": "qlora"}
    spec["training"] = {**BASE_SPEC["training"], "precision": "bf16"}
    loaded = load_model(
        SFTJobSpec.model_validate(spec),
        ModelSource(str(tiny_model_dir)),
        Precision("bf16", "bfloat16"),
    )
    four_bit = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # every linear layer of both decoder layers
    assert all(not m.weight.requires_grad for m in four_bit)
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_adamw_8bit_full_finetuning_learns(tiny_model_dir: Path, tmp_path: Path) -> None:
    records = train(
        tmp_path,
        tiny_model_dir,
        method={"type": "full", "lora": None},
        training={"precision": "bf16", "learningRate": 1e-3, "optimizer": "adamw_8bit"},
    )
    assert_learned(records)
