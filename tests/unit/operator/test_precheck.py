"""Settings that read eval loss are refused when the dataset's eval split is empty."""

from __future__ import annotations

from kubesft.operator.precheck import precheck
from tests.unit.operator.fixtures import READY, dataset, job


def _dataset(eval_rows: int | None):  # type: ignore[no-untyped-def]
    stats = None if eval_rows is None else {"train": 8, "eval": eval_rows}
    return dataset({**READY, "stats": stats} if stats else READY)


def test_each_setting_reading_eval_loss_is_named_when_the_eval_split_is_empty() -> None:
    spec = job(
        training={"maxSteps": 5, "earlyStopping": {"patience": 1}},
        checkpoints={"keepBest": True},
        evaluation={"everySteps": 2},
    )
    problems = precheck(spec, _dataset(0))
    assert [p.split(":")[0] for p in problems] == [
        "spec.training.earlyStopping",
        "spec.checkpoints.keepBest",
        "spec.evaluation.everySteps",
    ]
    assert all("SFTDataset 'quickstart' has an empty eval split" in p for p in problems)


def test_nothing_is_refused_with_eval_rows_unknown_counts_or_defaults() -> None:
    reads_eval = job(training={"earlyStopping": {"patience": 1}})
    assert precheck(reads_eval, _dataset(4)) == []
    assert precheck(reads_eval, _dataset(None)) == []  # not known: the trainer decides
    assert precheck(job(), _dataset(0)) == []  # keepBest by default only falls back
    assert precheck(job(checkpoints={"keepBest": False}), _dataset(0)) == []
