"""Pure: the phase, conditions and results of an SFTJob from what exists in the cluster.

Everything here is re-derived from observed objects, so an operator restarted at any
point reaches the same status; only fields the trainer reports (progress, metrics,
checkpoints) are carried over from the current status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubesft.api import SFTDataset, SFTJob, SFTJobStatus
from kubesft.api.base import ConditionStatus
from kubesft.api.job_status import (
    TERMINAL_PHASES,
    CheckpointInfo,
    EvaluationResult,
    Metrics,
    OutputInfo,
    Preflight,
    Progress,
)
from kubesft.operator.conditions import set_condition
from kubesft.operator.observe import ObservedJob, Termination

OOM_ADVICE = (
    "the trainer ran out of memory (OOMKilled): use method.type qlora, lower "
    "training.microBatchSize or training.maxSeqLength, keep training.gradientCheckpointing "
    "on, or raise resources.memory / add resources.gpus"
)


@dataclass(frozen=True)
class JobFacts:
    """Everything the SFTJob's status depends on besides the SFTJob itself."""

    dataset: SFTDataset | None
    trainer: ObservedJob | None
    infeasible: str | None = None
    """Why the request cannot run (checked before any trainer pod exists)."""


class _Status:
    """Small mutable helper so the derivation below reads as a list of cases."""

    def __init__(self, job: SFTJob, now: str) -> None:
        self.value = (job.status or SFTJobStatus()).model_copy(deep=True)
        self.generation = job.metadata.generation
        self.now = now
        self.value.observed_generation = self.generation

    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.value.conditions = set_condition(
            self.value.conditions, type_, status, reason, message, self.generation, self.now
        )


def _dataset_condition(s: _Status, job: SFTJob, dataset: SFTDataset | None) -> bool:
    name = job.spec.dataset.name
    if dataset is None:
        s.cond("DatasetReady", "False", "DatasetNotFound",
               f"SFTDataset {name!r} does not exist in this namespace: create it or fix "
               "spec.dataset.name")  # fmt: skip
        return False
    ds = dataset.status
    if ds is None or ds.phase != "Ready" or ds.observed_generation != dataset.metadata.generation:
        phase = ds.phase if ds else "Pending"
        detail = next((c.message for c in (ds.conditions if ds else []) if c.type == "Ready"), "")
        reason = "DatasetFailed" if phase == "Failed" else "DatasetNotReady"
        message = f"SFTDataset {name!r} is {phase}" + (f": {detail}" if detail else "")
        s.cond("DatasetReady", "False", reason, message)
        return False
    s.cond("DatasetReady", "True", "DatasetReady", f"SFTDataset {name!r} is Ready")
    return True


def _failure_message(trainer: ObservedJob) -> tuple[str, str]:
    failure: Termination | None = trainer.last_failure()
    _, reason, message = trainer.conditions.get("Failed", ("", "", ""))
    if failure is not None and failure.oom_killed:
        return "OOMKilled", f"{OOM_ADVICE} (pod {failure.pod})"
    if failure is not None and failure.exit_code == 2:
        return "InvalidConfigOrData", failure.text()
    if reason == "DeadlineExceeded":
        return reason, f"{message}: raise spec.activeDeadlineSeconds or train fewer steps"
    if failure is not None:
        return reason or "TrainerFailed", f"{message}: last error: {failure.text()}".strip(": ")
    return reason or "TrainerFailed", message


def _apply_summary(status: SFTJobStatus, summary: dict[str, Any]) -> None:
    """Copy the trainer's final summary (termination message) onto the status."""
    if "progress" in summary:
        status.progress = Progress.model_validate(summary["progress"])
    if "metrics" in summary:
        status.metrics = Metrics.model_validate(summary["metrics"])
    if "evaluation" in summary:
        status.evaluation = EvaluationResult.model_validate(summary["evaluation"])
    if "output" in summary:
        status.output = OutputInfo.model_validate(summary["output"])
    if "preflight" in summary:
        status.preflight = Preflight.model_validate(summary["preflight"])
    if "checkpoints" in summary:
        status.checkpoints = [CheckpointInfo.model_validate(c) for c in summary["checkpoints"]]
    if summary.get("bestCheckpoint"):
        status.best_checkpoint = summary["bestCheckpoint"]


def _finish(s: _Status, trainer: ObservedJob) -> None:
    st = s.value
    st.completion_time = st.completion_time or trainer.completion_time or s.now
    if trainer.complete:
        success = trainer.last_success()
        _apply_summary(st, (success.summary() if success else None) or {})
        st.phase = "Succeeded"
        if st.progress is not None:
            st.progress.percent = 100
        s.cond("Running", "False", "Finished")
        s.cond("Complete", "True", "TrainingSucceeded",
               f"output in {st.output.path}" if st.output else "training finished")  # fmt: skip
        return
    reason, message = _failure_message(trainer)
    st.phase = "Failed"
    s.cond("Running", "False", "Finished")
    s.cond("Failed", "True", reason, message)


def _running_phase(s: _Status, job: SFTJob, trainer: ObservedJob) -> None:
    st = s.value
    if job.spec.suspend:
        st.phase = "Suspended"
        s.cond("Admitted", "False", "Suspended", "spec.suspend is true: set it to false to run")
        s.cond("Running", "False", "Suspended")
    elif trainer.suspended:
        st.phase = "Queued"
        s.cond("Admitted", "False", "WaitingForQueue", "waiting for Kueue to admit the Job")
        s.cond("Running", "False", "Queued")
    elif trainer.running_pods:
        st.phase = "Running"
        s.cond("Admitted", "True", "Admitted")
        s.cond(
            "Running", "True", "TrainerRunning", f"{trainer.running_pods} trainer pod(s) running"
        )
    else:
        st.phase = "Queued"
        s.cond("Admitted", "True", "Admitted")
        waiting = "restarting after a failure" if trainer.failed else "waiting for trainer pods"
        s.cond("Running", "False", "PodsPending", waiting)
    last = trainer.last_failure()
    if last is not None and last.oom_killed and st.phase != "Running":
        s.cond("Running", "False", "OOMKilled", OOM_ADVICE)


def derive_job_status(job: SFTJob, facts: JobFacts, now: str) -> SFTJobStatus:
    """WaitingForDataset → (Failed: infeasible) → Queued/Suspended → Running → done."""
    s = _Status(job, now)
    st = s.value
    trainer = facts.trainer
    if st.phase in TERMINAL_PHASES and (trainer is None or st.completion_time):
        return job.status or st  # finished: children may be gone (TTL), the record stays
    if trainer is None:
        if not _dataset_condition(s, job, facts.dataset):
            st.phase = "WaitingForDataset"
            return st
        if facts.infeasible:
            st.phase = "Failed"
            s.cond("Feasible", "False", "Infeasible", facts.infeasible)
            s.cond("Failed", "True", "Infeasible", facts.infeasible)
            st.completion_time = now
            return st
        s.cond("Feasible", "True", "Feasible")
        st.phase = "Pending"
        return st
    st.restarts = trainer.failed
    # startTime marks the trainer Job's creation; from then on CEL keeps the spec fixed.
    st.start_time = st.start_time or trainer.start_time or now
    if trainer.complete or trainer.failed_for_good:
        _finish(s, trainer)
    else:
        _running_phase(s, job, trainer)
    return st
