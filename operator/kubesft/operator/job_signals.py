"""Pure: the Overfitting and Forgetting conditions of a running SFTJob, from what its
trainer reported (metrics.evalHistory, status.retention).

Both are signals, not failures: the run goes on (unless the user asked early stopping to
act on them), and `job_plan` posts a Warning Event when one turns True.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.api.base import ConditionStatus
from kubesft.api.job_status import JobReason
from kubesft.api.overfitting import detect_overfitting
from kubesft.api.retention import forgetting, relative_change

SIGNALS = ("Overfitting", "Forgetting")
"""Condition types that warn (an Event) when they turn True."""

Verdict = tuple[ConditionStatus, str, str]
"""A condition's status, reason and message."""


def overfitting_condition(job: SFTJob, status: SFTJobStatus) -> Verdict | None:
    """Overfitting from the reported evaluations (`kubesft.api.overfitting`); None (unset)
    until two evaluations exist, since one says nothing about a trend, and while it is
    already True on evaluations since dropped from the capped history: once True it stays
    True, it says the run overfit at some point, which matters after it recovers too."""
    history = status.metrics.eval_history if status.metrics else []
    if len(history) < 2:
        return None
    patience = job.spec.evaluation.overfitting_patience
    found = detect_overfitting(history, patience)
    if found is not None:
        return "True", JobReason.OVERFITTING, found.message()
    if any(c.type == "Overfitting" and c.status == "True" for c in status.conditions):
        return None
    latest = history[-1]
    return (
        "False",
        JobReason.NOT_OVERFITTING,
        (
            f"eval loss has not risen for {patience} consecutive evaluations while train loss "
            f"fell (latest {latest.eval_loss:.4g} at step {latest.step})"
        ),
    )


def forgetting_condition(job: SFTJob, status: SFTJobStatus) -> Verdict | None:
    """Forgetting from status.retention (`kubesft.api.retention.forgetting` with
    spec.evaluation.retention.threshold, the rule the trainer's early stopping applies).

    None (unset) without spec.evaluation.retention and until a retention loss after step 0
    exists. It follows the latest evaluation: the loss may come back under the threshold
    (a learning-rate decay, replay), and the condition then says so.
    """
    spec = job.spec.evaluation.retention
    r = status.retention
    if spec is None or r is None:
        return None
    message = forgetting(r, spec.threshold)
    if message is not None:
        return "True", JobReason.FORGETTING, message
    if r.loss_before is None or r.loss is None or not r.step:
        return None
    change = relative_change(r.loss_before, r.loss)
    return (
        "False",
        JobReason.NOT_FORGETTING,
        (
            f"retention loss on SFTDataset {r.name!r} changed {change:+.1%} "
            f"({r.loss_before:.4g} before training -> {r.loss:.4g} at step {r.step}), within "
            f"spec.evaluation.retention.threshold {spec.threshold:g}"
        ),
    )


def evaluated_step(status: Mapping[str, Any] | None) -> int | None:
    """The step of the latest evaluation a raw SFTJob status reports (metrics.evalHistory,
    status.retention), None before any: the signals above change only with it, so the
    watch reconciles a running job on a new evaluation and not on every progress report."""
    status = status or {}
    history = (status.get("metrics") or {}).get("evalHistory") or []
    steps = [history[-1].get("step")] if history and isinstance(history[-1], dict) else []
    steps.append((status.get("retention") or {}).get("step"))
    known = [step for step in steps if isinstance(step, int)]
    return max(known) if known else None
