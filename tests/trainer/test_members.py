"""A run's datasets: chat and text members tokenized and mixed, the retention set loaded."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.job import SFTJobSpec
from kubesft.api.runtime import TrainerDataset
from kubesft_trainer import data
from kubesft_trainer.chat_template import load_builtin_template
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample
from kubesft_trainer.members import load_retention, load_run_data
from tests.support.sft_run import (
    BASE_SPEC,
    sentence,
    write_prepared_dataset,
    write_text_dataset,
)

CHATML = load_builtin_template("chatml")


def write_long_prompts(directory: Path) -> Path:
    """Chat rows whose user turn alone fills the shortest maxSeqLength (16)."""
    rng = random.Random(2)
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": sentence(rng, 30, 40)},
                      {"role": "assistant", "content": "sure"}]}
        for _ in range(4)
    ]  # fmt: skip
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def graded_whole(example: TokenizedExample) -> bool:
    """Every token graded, save the first, which nothing before it predicts."""
    return example.labels[1:] == example.input_ids[1:]


def mixture_spec(members: dict[str, float], **training: Any) -> SFTJobSpec:
    spec = {key: value for key, value in BASE_SPEC.items() if key != "dataset"}
    spec["datasets"] = [{"name": name, "weight": weight} for name, weight in members.items()]
    spec["training"] = {**BASE_SPEC["training"], **training}
    return SFTJobSpec.model_validate(spec)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    return {
        "chat": write_prepared_dataset(tmp_path / "chat", train=12, evals=3),
        "code": write_prepared_dataset(tmp_path / "code", train=4, evals=2),
        "general-text": write_text_dataset(tmp_path / "text", train=6, evals=0),
    }


def runtime_datasets(folders: dict[str, Path], weights: dict[str, float]) -> list[TrainerDataset]:
    return [TrainerDataset(name=n, dir=str(folders[n]), weight=w) for n, w in weights.items()]


@pytest.mark.parametrize("loss_on", ["assistant", "completion"])
def test_text_rows_are_graded_whole_and_chat_rows_masked_in_one_mixed_run(
    tiny_tokenizer, folders, loss_on
) -> None:
    weights = {"chat": 0.6, "code": 0.3, "general-text": 0.1}
    spec = mixture_spec(weights, lossOn=loss_on)
    run = load_run_data(spec, runtime_datasets(folders, weights), tiny_tokenizer, CHATML)

    assert run.mixture is not None
    counts = [entry.examples_per_epoch for entry in run.mixture]
    assert len(run.train.examples) == sum(counts)
    # The mixed epoch lists members in spec order; each member's examples are its own
    # examples tokenized alone, so mixing changes no token and no label.
    start = 0
    for (name, folder), count in zip(folders.items(), counts, strict=True):
        mine = run.train.examples[start : start + count]
        start += count
        _, alone = data.load_split(folder, "train", tiny_tokenizer, spec.training, CHATML)
        assert set(map(repr, mine)) <= set(map(repr, alone.examples)), name
        for example in mine:
            graded = [label != IGNORE_INDEX for label in example.labels]
            if name == "general-text":  # no prompt: every token is graded
                assert graded_whole(example)
            else:  # the user turn and the headers are not
                assert any(graded) and not all(graded)


def test_eval_splits_stay_apart_and_sample_prompts_come_from_every_member(
    tiny_tokenizer, folders
) -> None:
    weights = {"chat": 1.0, "code": 1.0, "general-text": 1.0}
    run = load_run_data(
        mixture_spec(weights), runtime_datasets(folders, weights), tiny_tokenizer, CHATML
    )
    # general-text has no eval split: it is not an eval set.
    assert [(e.name, len(e.split.examples)) for e in run.evals] == [("chat", 3), ("code", 2)]
    chat_rows = data.read_jsonl(folders["chat"] / "eval.jsonl")
    code_rows = data.read_jsonl(folders["code"] / "eval.jsonl")
    assert run.eval_rows[:4] == [chat_rows[0], code_rows[0], chat_rows[1], code_rows[1]]


def test_a_single_dataset_is_its_split_untouched_and_has_no_plan(tiny_tokenizer, folders) -> None:
    spec = SFTJobSpec.model_validate(BASE_SPEC)
    datasets = [TrainerDataset(name="tiny", dir=str(folders["chat"]))]
    run = load_run_data(spec, datasets, tiny_tokenizer, CHATML)
    _, alone = data.load_split(folders["chat"], "train", tiny_tokenizer, spec.training, CHATML)
    assert run.train == alone
    assert run.mixture is None


def test_a_member_without_training_examples_is_named(tiny_tokenizer, folders, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    folders = {**folders, "empty": empty}
    weights = {"chat": 1.0, "empty": 1.0}
    with pytest.raises(UserError, match="SFTDataset 'empty' has no training examples"):
        load_run_data(
            mixture_spec(weights), runtime_datasets(folders, weights), tiny_tokenizer, CHATML
        )


def test_a_member_truncated_to_nothing_is_named(tiny_tokenizer, folders, tmp_path) -> None:
    folders = {**folders, "long": write_long_prompts(tmp_path / "long")}
    weights = {"chat": 1.0, "long": 1.0}
    spec = mixture_spec(weights, maxSeqLength=16)
    with pytest.raises(UserError, match="SFTDataset 'long': all 4 training examples"):
        load_run_data(spec, runtime_datasets(folders, weights), tiny_tokenizer, CHATML)


def test_retention_scores_every_row_up_to_max_examples(tiny_tokenizer, folders) -> None:
    spec = SFTJobSpec.model_validate(BASE_SPEC)
    chat = TrainerDataset(name="general-chat", dir=str(folders["chat"]))
    retention = load_retention(spec, chat, tiny_tokenizer, CHATML)
    assert retention.name == "general-chat"
    assert len(retention.split.examples) == 12 + 3  # train and eval rows
    capped = spec.model_copy(deep=True)
    capped.evaluation.max_examples = 5
    text = TrainerDataset(name="general-text", dir=str(folders["general-text"]))
    split = load_retention(capped, text, tiny_tokenizer, CHATML).split
    assert len(split.examples) == 5
    assert all(graded_whole(e) for e in split.examples)


def test_retention_with_nothing_to_score_names_the_dataset(tiny_tokenizer, tmp_path) -> None:
    spec = SFTJobSpec.model_validate({**BASE_SPEC, "training": {"maxSeqLength": 16}})
    long = TrainerDataset(name="general-chat", dir=str(write_long_prompts(tmp_path / "long")))
    with pytest.raises(UserError, match=r"spec\.evaluation\.retention: SFTDataset 'general-chat'"):
        load_retention(spec, long, tiny_tokenizer, CHATML)
