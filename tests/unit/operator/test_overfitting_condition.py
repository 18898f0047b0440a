"""The Overfitting condition of an SFTJob, derived from the reported evaluation history."""

from __future__ import annotations

from typing import Any

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.operator.derive_job import JobFacts, derive_job_status
from tests.unit.operator.fixtures import READY, dataset, job, observed

NOW = "2026-01-01T00:01:00Z"


def running_with(evals: list[tuple[float, float]], **spec: Any) -> SFTJob:
    """A running job whose trainer reported (train loss, eval loss) per evaluation."""
    obj = job(**spec)
    history = [
        {"step": 50 * (i + 1), "trainLoss": train, "evalLoss": ev}
        for i, (train, ev) in enumerate(evals)
    ]
    obj.status = SFTJobStatus.model_validate(
        {"phase": "Running", "metrics": {"evalHistory": history}}
    )
    return obj


def overfitting(obj: SFTJob) -> tuple[str, str, str] | None:
    st = derive_job_status(obj, JobFacts([dataset(READY)], observed(running_pods=1)), NOW)
    found = [(c.status, c.reason, c.message) for c in st.conditions if c.type == "Overfitting"]
    return found[0] if found else None


def test_overfitting_is_true_with_the_numbers() -> None:
    obj = running_with([(2.0, 1.5), (1.5, 1.6), (1.0, 1.7)], evaluation={"overfittingPatience": 2})
    status, reason, message = overfitting(obj) or ("", "", "")
    assert (status, reason) == ("True", "EvalLossRising")
    assert "1.5 at step 50 -> 1.7 at step 150" in message and "(2 -> 1)" in message


def test_default_patience_needs_three_rises() -> None:
    found = overfitting(running_with([(2.0, 1.5), (1.5, 1.6), (1.0, 1.7)]))
    status, reason, message = found or ("", "", "")
    assert (status, reason) == ("False", "EvalLossNotRising")
    assert "3 consecutive evaluations" in message and "1.7 at step 150" in message


def test_one_evaluation_leaves_the_condition_unset() -> None:
    assert overfitting(running_with([(2.0, 1.5)])) is None
    assert overfitting(running_with([])) is None


def test_true_stays_true_when_the_window_left_the_history() -> None:
    obj = running_with([(1.0, 1.3), (0.9, 1.2)])
    assert obj.status is not None
    obj.status.conditions = derive_job_status(
        running_with([(2.0, 1.0), (1.5, 1.1), (1.0, 1.2), (0.8, 1.3)]),
        JobFacts([dataset(READY)], observed(running_pods=1)),
        NOW,
    ).conditions
    status, reason, _ = overfitting(obj) or ("", "", "")
    assert (status, reason) == ("True", "EvalLossRising")
