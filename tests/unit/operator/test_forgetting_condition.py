"""The Forgetting condition of an SFTJob, from the retention loss its trainer reported, and
the Warning Events of signals turning True."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.operator.config import OperatorConfig
from kubesft.operator.derive_job import JobFacts, derive_job_status
from kubesft.operator.job_plan import plan_job
from kubesft.operator.job_signals import evaluated_step
from kubesft.operator.kube import Kube
from kubesft.operator.reconciler import Reconciler
from tests.unit.operator.fixtures import job, mixture_job, observed

NOW = "2026-01-01T00:01:00Z"


def running_with(retention: dict[str, Any] | None, sft: SFTJob | None = None) -> SFTJob:
    obj = sft or mixture_job()
    status: dict[str, Any] = {"phase": "Running"}
    if retention is not None:
        status["retention"] = {"name": "held", **retention}
    obj.status = SFTJobStatus.model_validate(status)
    return obj


def forgetting(obj: SFTJob) -> tuple[str, str, str] | None:
    st = derive_job_status(obj, JobFacts([], observed(running_pods=1)), NOW)
    found = [(c.status, c.reason, c.message) for c in st.conditions if c.type == "Forgetting"]
    return found[0] if found else None


def test_a_rise_past_the_threshold_is_true_with_the_numbers() -> None:
    found = forgetting(running_with({"lossBefore": 2.0, "loss": 2.5, "step": 40}))
    status, reason, message = found or ("", "", "")
    assert (status, reason) == ("True", "RetentionLossRising")
    assert "'held' rose 25.0% (2 before training -> 2.5 at step 40)" in message
    assert "spec.evaluation.retention.threshold 0.1" in message


def test_within_the_threshold_is_false_with_the_change() -> None:
    found = forgetting(running_with({"lossBefore": 2.0, "loss": 2.1, "step": 40}))
    status, reason, message = found or ("", "", "")
    assert (status, reason) == ("False", "RetentionLossWithinThreshold")
    assert "changed +5.0% (2 before training -> 2.1 at step 40)" in message


def test_the_threshold_is_the_users() -> None:
    strict = mixture_job(evaluation={"retention": {"name": "held", "threshold": 0.01}})
    found = forgetting(running_with({"lossBefore": 2.0, "loss": 2.1, "step": 40}, strict))
    assert found is not None and found[:2] == ("True", "RetentionLossRising")


def test_unset_without_retention_or_before_a_measurement_after_step_zero() -> None:
    assert forgetting(running_with(None)) is None
    assert forgetting(running_with({"lossBefore": 2.0})) is None
    assert forgetting(running_with({"lossBefore": 2.0, "loss": 2.0, "step": 0})) is None
    # A reported retention status on a job without spec.evaluation.retention says nothing.
    plain = running_with({"lossBefore": 2.0, "loss": 3.0, "step": 40}, job())
    assert forgetting(plain) is None


def test_a_warning_event_once_when_it_turns_true() -> None:
    sft = running_with({"lossBefore": 2.0, "loss": 2.1, "step": 40})
    first = plan_job(sft, JobFacts([], observed(running_pods=1)), NOW)
    assert not [e for e in first.events if e.reason == "RetentionLossRising"]
    sft.status = first.status.model_copy(deep=True)
    assert sft.status.retention is not None
    sft.status.retention.loss, sft.status.retention.step = 2.6, 80
    second = plan_job(sft, JobFacts([], observed(running_pods=1)), NOW)
    (warning,) = [e for e in second.events if e.reason == "RetentionLossRising"]
    assert warning.type == "Warning" and "at step 80" in warning.message
    sft.status = second.status
    third = plan_job(sft, JobFacts([], observed(running_pods=1)), NOW)
    assert not [e for e in third.events if e.reason == "RetentionLossRising"]


def test_overfitting_turning_true_warns_too() -> None:
    sft = job(evaluation={"overfittingPatience": 2})
    history = [{"step": 50 * (i + 1), "trainLoss": t, "evalLoss": e} for i, (t, e) in
               enumerate([(2.0, 1.5), (1.5, 1.6), (1.0, 1.7)])]  # fmt: skip
    sft.status = SFTJobStatus.model_validate(
        {"phase": "Running", "metrics": {"evalHistory": history}}
    )
    plan = plan_job(sft, JobFacts([], observed(running_pods=1)), NOW)
    (warning,) = [e for e in plan.events if e.reason == "EvalLossRising"]
    assert warning.type == "Warning" and "1.7 at step 150" in warning.message


def test_the_latest_evaluation_step_from_a_raw_status() -> None:
    assert evaluated_step(None) is None
    assert evaluated_step({"progress": {"step": 7}}) is None
    assert evaluated_step({"metrics": {"evalHistory": [{"step": 5}, {"step": 10}]}}) == 10
    assert evaluated_step({"retention": {"name": "held", "lossBefore": 2.0, "step": 0}}) == 0
    both = {"metrics": {"evalHistory": [{"step": 10}]}, "retention": {"step": 15}}
    assert evaluated_step(both) == 15


class Adds:
    """Stands in for the work queue: records what the watch asked to reconcile."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str, str]] = []

    def add(self, key: tuple[str, str, str], *, urgent: bool = False) -> None:
        self.keys.append(key)


def test_the_watch_reconciles_a_running_job_on_a_new_evaluation_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress reports alone are skipped (the spec version was covered); a report with a
    new evaluation is a new version: the signals are derived from it at once."""
    reconciler = Reconciler(cast(Kube, None), OperatorConfig(trainer_image="t"))
    queue = Adds()
    monkeypatch.setattr(reconciler, "queue", queue)
    monkeypatch.setattr(reconciler, "job", lambda namespace, name: None)
    key = ("SFTJob", "team", "demo")

    def event(status: dict[str, Any]) -> int:
        before = len(queue.keys)
        reconciler.job_event("team", "demo", ("uid", 1, evaluated_step(status)), False, False)
        for added in queue.keys[before:]:
            reconciler._process(added)  # what a worker does: covers the version it read
        return len(queue.keys) - before

    assert event({}) == 1
    assert event({"progress": {"step": 3}}) == 0
    assert event({"metrics": {"evalHistory": [{"step": 5}]}}) == 1
    assert event({"metrics": {"evalHistory": [{"step": 5}]}, "progress": {"step": 6}}) == 0
    assert event({"metrics": {"evalHistory": [{"step": 5}]}, "retention": {"step": 10}}) == 1
    assert queue.keys == [key] * 3
