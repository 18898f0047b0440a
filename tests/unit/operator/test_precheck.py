"""Settings that read eval loss, and retention, are refused when no training member has an
eval split."""

from __future__ import annotations

from kubesft.api import SFTDataset
from kubesft.operator.precheck import precheck
from tests.unit.operator.fixtures import READY, dataset, job, mixture_job


def _dataset(eval_rows: int | None, name: str = "quickstart") -> SFTDataset:
    stats = None if eval_rows is None else {"train": 8, "eval": eval_rows}
    return dataset({**READY, "stats": stats} if stats else READY, name=name)


def _by_name(*datasets: SFTDataset) -> dict[str, SFTDataset]:
    return {d.metadata.name or "": d for d in datasets}


def test_each_setting_reading_eval_loss_is_named_when_the_eval_split_is_empty() -> None:
    spec = job(
        training={"maxSteps": 5, "earlyStopping": {"patience": 1}},
        checkpoints={"keepBest": True},
        evaluation={"everySteps": 2},
    )
    problems = precheck(spec, _by_name(_dataset(0)))
    assert [p.split(":")[0] for p in problems] == [
        "spec.training.earlyStopping",
        "spec.checkpoints.keepBest",
        "spec.evaluation.everySteps",
    ]
    assert all("SFTDataset 'quickstart' has an empty eval split" in p for p in problems)


def test_nothing_is_refused_with_eval_rows_unknown_counts_or_defaults() -> None:
    reads_eval = job(training={"earlyStopping": {"patience": 1}})
    assert precheck(reads_eval, _by_name(_dataset(4))) == []
    assert precheck(reads_eval, _by_name(_dataset(None))) == []  # not known: the trainer decides
    assert precheck(reads_eval, {}) == []  # not given (kubesft validate of the job alone)
    assert precheck(job(), _by_name(_dataset(0))) == []  # keepBest by default only falls back
    assert precheck(job(checkpoints={"keepBest": False}), _by_name(_dataset(0))) == []


def _mixture_sets(chat: int, code: int, general: int) -> dict[str, SFTDataset]:
    return _by_name(
        _dataset(chat, "chat"),
        _dataset(code, "code"),
        _dataset(general, "general-text"),
        _dataset(0, "held"),  # retention scores all its rows: its split does not matter
    )


def test_a_mixture_with_no_member_eval_split_refuses_eval_settings_and_retention() -> None:
    spec = mixture_job(training={"earlyStopping": {"patience": 1}})
    problems = precheck(spec, _mixture_sets(0, 0, 0))
    assert [p.split(":")[0] for p in problems] == [
        "spec.training.earlyStopping",
        "spec.evaluation.retention",
    ]
    assert all(
        "no member of spec.datasets has an eval split (SFTDatasets 'chat', 'code', "
        "'general-text'" in p
        for p in problems
    ), problems


def test_one_member_with_an_eval_split_is_enough() -> None:
    spec = mixture_job(training={"earlyStopping": {"patience": 1}})
    assert precheck(spec, _mixture_sets(0, 3, 0)) == []


def test_retention_alone_is_refused_without_an_eval_split() -> None:
    spec = job(evaluation={"retention": {"name": "held"}})
    (problem,) = precheck(spec, _by_name(_dataset(0), _dataset(5, "held")))
    assert problem.startswith("spec.evaluation.retention: ")
    assert "SFTDataset 'quickstart' has an empty eval split" in problem
    assert precheck(spec, _by_name(_dataset(2), _dataset(5, "held"))) == []
