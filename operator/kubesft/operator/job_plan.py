"""Pure: what one reconcile of an SFTJob does, from what it observed.

read (reconcile_job) → `plan_job` (status, Events, whether to create the trainer) →
apply (reconcile_job creates children, writes status, posts the Events). Each Event's
message is the message of the condition that caused it, so `kubectl describe` and the
status tell the same story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.api.job_status import JobReason
from kubesft.api.report import TrainerReason
from kubesft.operator.conditions import get_condition
from kubesft.operator.derive_job import JobFacts, derive_job_status, describe_failure
from kubesft.operator.job_signals import SIGNALS
from kubesft.operator.observe import ObservedJob

PHASE_CAUSE = {
    "Pending": "Feasible",
    "WaitingForDataset": "DatasetReady",
    "Queued": "Running",
    "Suspended": "Admitted",
    "Running": "Running",
    "Succeeded": "Complete",
    "Failed": "Failed",
}
"""The condition whose message explains each phase."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the SFTJob."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class JobPlan:
    """The outcome of one reconcile: the status to write and the Events to post."""

    status: SFTJobStatus
    events: tuple[Event, ...]
    create_trainer: bool = False
    """The dataset is Ready and the request feasible: create the trainer's children."""


def plan_job(
    job: SFTJob, facts: JobFacts, now: str, *, previous: SFTJobStatus | None = None
) -> JobPlan:
    """Status and Events for `job` given `facts`; `previous` is the status the object
    carries (default `job.status`), against which transitions are judged."""
    before = job.status if previous is None else previous
    status = derive_job_status(job, facts, now)
    create = facts.trainer is None and status.phase == "Pending"
    return JobPlan(status, job_events(job, before, status, facts.trainer), create)


def job_events(
    job: SFTJob, before: SFTJobStatus | None, after: SFTJobStatus, trainer: ObservedJob | None
) -> tuple[Event, ...]:
    """A Warning for each trainer pod started again after a crash, one for each signal
    (Overfitting, Forgetting) that turned True, and one Event per phase change carrying the
    message of the condition behind it (Warning when Failed)."""
    events = []
    restarted = after.restarts - (before.restarts if before is not None else 0)
    if restarted > 0 and trainer is not None:
        events.append(restart_event(job, after, trainer))
    events += signal_events(before, after)
    if (before.phase if before is not None else None) != after.phase:
        kind: Literal["Normal", "Warning"] = "Warning" if after.phase == "Failed" else "Normal"
        events.append(Event(kind, after.phase, phase_message(after)))
    return tuple(events)


def signal_events(before: SFTJobStatus | None, after: SFTJobStatus) -> list[Event]:
    """A Warning (reason: the condition's) for each of `job_signals.SIGNALS` that turned
    True: the moment to look, while the run goes on."""
    events = []
    for type_ in SIGNALS:
        now = get_condition(after.conditions, type_)
        was = get_condition(before.conditions, type_) if before is not None else None
        if now is not None and now.status == "True" and (was is None or was.status != "True"):
            events.append(Event("Warning", now.reason, now.message))
    return events


def restart_event(job: SFTJob, after: SFTJobStatus, trainer: ObservedJob) -> Event:
    """Normal for a pod that checkpointed on SIGTERM (preemption, drain), else a Warning
    naming how the pod ended."""
    failure = trainer.last_failure()
    report = failure.trainer() if failure is not None else None
    if failure is not None and report is not None and report.reason == TrainerReason.PREEMPTED:
        return Event(
            "Normal",
            TrainerReason.PREEMPTED.value,
            f"trainer pod {failure.pod}: {report.message} (not counted against "
            "spec.retry.maxRestarts)",
        )
    ended = describe_failure(failure) if failure else "a trainer pod was evicted or preempted"
    return Event(
        "Warning",
        JobReason.TRAINER_RESTARTED,
        f"{ended}; the Job started it again (restart {after.restarts} of "
        f"spec.retry.maxRestarts {job.spec.retry.max_restarts})",
    )


def phase_message(status: SFTJobStatus) -> str:
    """The message of the condition that explains the phase (`PHASE_CAUSE`)."""
    cause = get_condition(status.conditions, PHASE_CAUSE.get(status.phase, ""))
    if cause is not None and cause.message:
        return cause.message
    return f"phase {status.phase}" + (f" ({cause.reason})" if cause is not None else "")
