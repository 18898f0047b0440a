"""A real run on a mixture: two chat members, text replay and a retention set, end to end
through the trainer CLI on the tiny model (CPU): the plan, per-dataset eval, retention
before and after, kept across a kill and resume, and early stopping on forgetting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.report import TrainerReason
from tests.support.sft_run import (
    run_trainer,
    start_trainer,
    trainer_config,
    wait_while_running,
    write_config,
    write_prepared_dataset,
    write_text_dataset,
)
from tests.support.trainer_faults import SLEEP as TEST_SLEEP_AFTER_STEP

DIGITS = [*"0123456789", "?", "!", ":"]
"""The base model's "general text", which the chat data never shows: fine-tuning on chat
moves probability away from it, so its loss rises (forgetting)."""
WEIGHTS = {"chat": 0.6, "code": 0.3, "general-text": 0.1}
SECTIONS: dict[str, Any] = {
    "training": {"maxSteps": 6},
    "evaluation": {"everySteps": 3, "samples": 1},
    "checkpoints": {"everySteps": 3},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixture-data")
    return {
        "chat": write_prepared_dataset(root / "chat", train=24, evals=4, seed=1),
        "code": write_prepared_dataset(root / "code", train=6, evals=3, seed=2),
        "general-text": write_text_dataset(root / "text", train=8, evals=2, seed=3),
        "retention": write_text_dataset(root / "retention", train=6, evals=2, words=DIGITS),
    }


@pytest.fixture(scope="module")
def digits_base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained on digit text first: a base that handles its retention set
    well, as a pretrained model handles general text (a random one would improve on it)."""
    root = tmp_path_factory.mktemp("digits-base")
    corpus = write_text_dataset(root / "corpus", train=32, evals=0, seed=9, words=DIGITS)
    config = trainer_config(
        tiny_model_dir,
        corpus,
        root / "out",
        method={"type": "full", "lora": None},
        training={"maxSteps": 30, "learningRate": 3e-3, "microBatchSize": 4},
        evaluation={"samples": 0},
    )
    result = run_trainer(write_config(root / "config.json", config))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out" / "model"


def mixture_config(model: Path, folders: dict[str, Path], out: Path, **sections: Any) -> Path:
    mixture = {name: (folders[name], weight) for name, weight in WEIGHTS.items()}
    config = trainer_config(
        model, mixture, out, retention=("general-digits", folders["retention"]), **sections
    )
    return write_config(out.parent / f"{out.name}.json", config)


def termination(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out.parent / f"{out.name}.termination-log").read_text())
    return doc


def test_a_mixture_reports_its_plan_per_dataset_eval_and_retention(
    digits_base: Path, tmp_path: Path, folders: dict[str, Path]
) -> None:
    out = tmp_path / "straight"
    result = run_trainer(mixture_config(digits_base, folders, out, **SECTIONS))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mixture of 3 datasets by examples (seed 7)" in result.stdout
    final = termination(out)

    plan = {entry["name"]: entry for entry in final["mixture"]}
    assert list(plan) == list(WEIGHTS)
    total = 24 + 6 + 8
    for name, weight in WEIGHTS.items():
        assert plan[name]["weight"] == pytest.approx(weight)
        assert plan[name]["examplesPerEpoch"] == round(weight * total)
    assert plan["code"]["repeats"] > 1 > plan["chat"]["repeats"]

    # Each member's eval split on its own; the overall loss weighs them by graded tokens.
    by_dataset = {d["name"]: d for d in final["evaluation"]["byDataset"]}
    assert list(by_dataset) == list(WEIGHTS)
    assert final["metrics"]["evalByDataset"] == final["evaluation"]["byDataset"]
    tokens = sum(d["tokens"] for d in by_dataset.values())
    weighted = sum(d["evalLoss"] * d["tokens"] for d in by_dataset.values()) / tokens
    assert final["evaluation"]["evalLoss"] == pytest.approx(weighted, rel=1e-5)

    retention = final["retention"]
    assert retention["name"] == "general-digits" and retention["step"] == 6
    assert retention["tokens"] > 0 and retention["lossBefore"] > 0
    change = (retention["loss"] - retention["lossBefore"]) / retention["lossBefore"]
    assert retention["relativeChange"] == pytest.approx(change, abs=1e-5)
    assert retention["relativeChange"] > 0  # chat fine-tuning forgets the digits

    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[0]["retention"]["loss"] == retention["lossBefore"]
    assert all(set(r["datasets"]) == set(WEIGHTS) for r in evals)
    assert "step 3: retention loss on SFTDataset 'general-digits'" in result.stdout

    # A run killed after step 3 and resumed keeps the loss before training.
    resumed_out = tmp_path / "resumed"
    config = mixture_config(digits_base, folders, resumed_out, **SECTIONS)
    log = tmp_path / "killed.log"
    killed = start_trainer(config, log, **{TEST_SLEEP_AFTER_STEP: "3"})
    try:
        wait_while_running(killed, log, "sleeping after step 3")
    finally:
        killed.kill()
        killed.wait()
    resumed = run_trainer(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(step 3)" in resumed.stdout and "before training:" not in resumed.stdout
    again = termination(resumed_out)
    assert again["retention"]["lossBefore"] == retention["lossBefore"]
    assert again["retention"]["loss"] == pytest.approx(retention["loss"], rel=1e-4)
    assert again["mixture"] == final["mixture"]


def test_retention_early_stop_ends_the_run_on_forgetting(
    digits_base: Path, tmp_path: Path, folders: dict[str, Path]
) -> None:
    out = tmp_path / "forgets"
    config = mixture_config(
        digits_base,
        folders,
        out,
        training={"maxSteps": 12},
        evaluation={
            "everySteps": 2,
            "samples": 0,
            "retention": {"threshold": 0.2, "earlyStop": True},
        },
        checkpoints={"everySteps": 100},
    )
    result = run_trainer(config)
    assert result.returncode == 0, result.stderr[-3000:]
    final = termination(out)
    assert final["reason"] == TrainerReason.EARLY_STOPPED
    assert final["message"].startswith("stopped early on forgetting: retention loss on SFTDataset")
    assert "spec.evaluation.retention.threshold 0.2" in final["message"]
    stopped = final["progress"]["step"]
    assert stopped < 12 and final["retention"]["step"] == stopped
    assert final["retention"]["relativeChange"] > 0.2


def test_two_ranks_score_each_dataset_like_one_process(
    digits_base: Path, tmp_path: Path, folders: dict[str, Path]
) -> None:
    """Each rank scores its share of every member and of the retention set; the reduced sums
    are those of one process (the sets are reduced together, in one call)."""
    scored = {}
    for ranks, accumulation in ((2, 1), (1, 2)):
        out = tmp_path / f"ranks-{ranks}"
        sections = {
            "training": {"maxSteps": 2, "gradientAccumulation": accumulation},
            "evaluation": {"everySteps": 2, "samples": 0},
        }
        config = mixture_config(digits_base, folders, out, **sections)
        result = run_trainer(config, nproc=ranks, GLOO_SOCKET_IFNAME="lo")
        assert result.returncode == 0, result.stderr[-3000:]
        records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
        scored[ranks] = [r for r in records if r["type"] == "eval"]
    for one, two in zip(scored[1], scored[2], strict=True):
        assert one["step"] == two["step"]
        for name, values in one["datasets"].items():
            assert two["datasets"][name]["tokens"] == values["tokens"]
            assert two["datasets"][name]["evalLoss"] == pytest.approx(values["evalLoss"], abs=1e-4)
        assert two["retention"]["tokens"] == one["retention"]["tokens"]
        assert two["retention"]["loss"] == pytest.approx(one["retention"]["loss"], abs=1e-4)
