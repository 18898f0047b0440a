"""Pure: the phase, conditions and results of an SFTJob from what exists in the cluster.

Everything here is re-derived from observed objects, so an operator restarted at any
point reaches the same status; only fields the trainer reports (progress, metrics,
checkpoints) are carried over from the current status. `job_plan.plan_job` adds the
Events a transition deserves.

The phase never goes backwards: once a trainer pod ran, the job stays Running until the
Job is Complete or Failed, through a crash and its restart (`Restarting`) and through the
moment between the last pod finishing and the Job controller marking it Complete
(`Finishing`). Only the Job's own Complete/Failed conditions end a run: a pod that
succeeded says nothing about its siblings (multi-node) or about what the Job will do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubesft.api import SFTDataset, SFTJob, SFTJobStatus
from kubesft.api.base import ConditionStatus
from kubesft.api.job_status import TERMINAL_PHASES, Fingerprint, JobReason
from kubesft.api.report import TrainerReason, TrainerReport, TrainerTermination
from kubesft.operator.conditions import set_condition
from kubesft.operator.dataset_readiness import dataset_readiness
from kubesft.operator.job_signals import forgetting_condition, overfitting_condition
from kubesft.operator.observe import ObservedJob, Termination

OOM_ADVICE = (
    "the trainer ran out of memory (OOMKilled): use method.type qlora, lower "
    "training.microBatchSize or training.maxSeqLength, keep training.gradientCheckpointing "
    "on, or raise resources.memory / add resources.gpus"
)


@dataclass(frozen=True)
class JobFacts:
    """Everything the SFTJob's status depends on besides the SFTJob itself."""

    datasets: Sequence[SFTDataset]
    """The SFTDatasets of spec.dataset_names() that exist (read until the trainer exists)."""
    trainer: ObservedJob | None
    infeasible: str | None = None
    """Why the request cannot run (checked before any trainer pod exists)."""
    feasible: str | None = None
    """How it fits when it can: the strategy and the per-GPU memory estimate."""


class _Status:
    """Small mutable helper so the derivation below reads as a list of cases."""

    def __init__(self, job: SFTJob, now: str) -> None:
        self.value = (job.status or SFTJobStatus()).model_copy(deep=True)
        self.previous_phase = self.value.phase
        self.generation = job.metadata.generation
        self.now = now
        self.value.observed_generation = self.generation

    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.value.conditions = set_condition(
            self.value.conditions, type_, status, reason, message, self.generation, self.now
        )


def _dataset_condition(s: _Status, job: SFTJob, found: Sequence[SFTDataset]) -> bool:
    status, reason, message = dataset_readiness(job, found)
    s.cond("DatasetReady", status, reason, message)
    return status == "True"


def describe_failure(failure: Termination) -> str:
    """One line on how a trainer container ended: OOM advice, or its exit and message."""
    if failure.oom_killed:
        return f"{OOM_ADVICE} (pod {failure.pod})"
    text = failure.text()
    exit_text = failure.exit_text()
    detail = "" if text == exit_text else f": {text}"
    return f"trainer pod {failure.pod} ended with {exit_text}{detail}"


def _telling_failure(trainer: ObservedJob) -> tuple[Termination | None, TrainerTermination | None]:
    """The failure that explains the most: the latest with the trainer's own message (on
    multi-node the Job controller kills the other pods after one fails, and their
    terminations say nothing), else the latest."""
    for failure in reversed(trainer.terminations):
        report = failure.trainer() if failure.exit_code != 0 else None
        if report is not None and report.phase == "Failed":
            return failure, report
    return trainer.last_failure(), None


def _failure_reason(trainer: ObservedJob) -> tuple[str, str]:
    """Reason and message of the Failed condition: the trainer's own when it wrote one."""
    failure, report = _telling_failure(trainer)
    _, job_reason, job_message = trainer.conditions.get("Failed", ("", "", ""))
    if failure is not None and failure.oom_killed:
        return JobReason.OOM_KILLED, describe_failure(failure)
    if job_reason == JobReason.DEADLINE_EXCEEDED:
        return job_reason, f"{job_message}: raise spec.activeDeadlineSeconds or train fewer steps"
    if report is not None and failure is not None:
        return report.reason.value, report.message or describe_failure(failure)
    if failure is not None:
        return JobReason.TRAINER_FAILED, f"{job_message}: {describe_failure(failure)}".strip(": ")
    return job_reason or JobReason.TRAINER_FAILED, job_message or "the trainer Job failed"


def _final_report(trainer: ObservedJob) -> TrainerTermination | None:
    """The trainer's final report: rank 0's termination message (other ranks write none)."""
    for ended in reversed(trainer.terminations):
        report = ended.trainer() if ended.exit_code == 0 else None
        if report is not None:
            return report
    return None


def apply_report(status: SFTJobStatus, report: TrainerReport) -> None:
    """Put every field the trainer reported onto `status` (the contract's fields, which
    SFTJobStatus shares by name and type; `test_contract` pins that)."""
    for name in TrainerReport.model_fields:
        value = getattr(report, name)
        if value is not None:
            setattr(status, name, value)


def _finish(s: _Status, trainer: ObservedJob) -> None:
    st = s.value
    st.completion_time = st.completion_time or trainer.completion_time or s.now
    s.cond("Running", "False", JobReason.FINISHED, "the trainer Job has ended")
    if trainer.complete:
        report = _final_report(trainer)
        if report is not None:
            apply_report(st, report)
        st.phase = "Succeeded"
        if st.progress is not None:
            st.progress.percent = 100
        reason = report.reason.value if report is not None else TrainerReason.COMPLETED.value
        message = (report.message if report is not None else "") or (
            f"output in {st.output.path}" if st.output else "training finished"
        )
        s.cond("Complete", "True", reason, message)
        return
    reason, message = _failure_reason(trainer)
    _, failed = _telling_failure(trainer)
    if failed is not None:  # what was attempted (fingerprint) and how far it got
        apply_report(st, failed)
    st.phase = "Failed"
    s.cond("Failed", "True", reason, message)


def _active_phase(s: _Status, job: SFTJob, trainer: ObservedJob) -> None:
    """Suspended, Queued or Running while the trainer Job is neither Complete nor Failed."""
    st = s.value
    nodes = job.spec.resources.nodes
    if job.spec.suspend:
        st.phase = "Suspended"
        message = "spec.suspend is true: set it to false to run"
        s.cond("Admitted", "False", JobReason.SUSPENDED, message)
        s.cond("Running", "False", JobReason.SUSPENDED, message)
        return
    if trainer.suspended:
        st.phase = "Queued"
        message = "waiting for Kueue to admit the trainer Job"
        s.cond("Admitted", "False", JobReason.WAITING_FOR_QUEUE, message)
        s.cond("Running", "False", JobReason.WAITING_FOR_QUEUE, message)
        return
    s.cond("Admitted", "True", JobReason.ADMITTED, "the trainer Job may start its pods")
    if trainer.running_pods:
        st.phase = "Running"
        s.cond("Running", "True", JobReason.TRAINER_RUNNING,
               f"{trainer.running_pods} of {nodes} trainer pod(s) running")  # fmt: skip
    elif trainer.succeeded >= nodes:
        st.phase = "Running"
        s.cond("Running", "True", JobReason.FINISHING,
               f"{trainer.succeeded} of {nodes} trainer pod(s) finished; waiting for the Job "
               "to complete")  # fmt: skip
    elif s.previous_phase == "Running" or trainer.succeeded:
        st.phase = "Running"  # a crash being retried: the run goes on, it is not queued again
        failure = trainer.last_failure()
        retries = job.spec.retry.max_restarts
        message = (
            f"{trainer.succeeded} of {nodes} trainer pod(s) finished; waiting for the others"
            if failure is None
            else f"{describe_failure(failure)}; waiting for the replacement pod (restart "
            f"{st.restarts} of spec.retry.maxRestarts {retries})"
        )
        s.cond("Running", "True", JobReason.RESTARTING, message)
    else:
        st.phase = "Queued"
        s.cond("Running", "False", JobReason.PODS_PENDING, "waiting for trainer pods to start")


def _observe_trainer(st: SFTJobStatus, trainer: ObservedJob, now: str) -> None:
    """restarts and startTime: facts of the trainer Job whatever its phase."""
    if trainer.restarts is not None:
        st.restarts = max(st.restarts, trainer.restarts)  # pods may be gone; retries stay
    # startTime marks the trainer Job's creation; from then on CEL keeps the spec fixed.
    st.start_time = st.start_time or trainer.start_time or now


def _fingerprint_image(st: SFTJobStatus, trainer: ObservedJob, seen: str | None) -> None:
    """The image part of the fingerprint, which only the node knows (the trainer reports
    the dataset and config parts); `seen` is the image an earlier reconcile recorded."""
    image = trainer.image or seen
    if image is not None:
        fingerprint = st.fingerprint or Fingerprint()
        st.fingerprint = fingerprint.model_copy(update={"image": image})


def _signals(s: _Status, job: SFTJob) -> None:
    """Overfitting and Forgetting (`job_signals`): set when there is something to say."""
    for type_, derive in (
        ("Overfitting", overfitting_condition),
        ("Forgetting", forgetting_condition),
    ):
        verdict = derive(job, s.value)
        if verdict is not None:
            s.cond(type_, *verdict)


def derive_job_status(job: SFTJob, facts: JobFacts, now: str) -> SFTJobStatus:
    """WaitingForDataset → (Failed: infeasible) → Queued/Suspended → Running → done."""
    s = _Status(job, now)
    st = s.value
    trainer = facts.trainer
    if st.phase in TERMINAL_PHASES and (trainer is None or st.completion_time):
        return job.status or st  # finished: children may be gone (TTL), the record stays
    if trainer is None:
        if not _dataset_condition(s, job, facts.datasets):
            st.phase = "WaitingForDataset"
            return st
        if facts.infeasible:
            st.phase = "Failed"
            s.cond("Feasible", "False", JobReason.INFEASIBLE, facts.infeasible)
            s.cond("Failed", "True", JobReason.INFEASIBLE, facts.infeasible)
            st.completion_time = now
            return st
        fits = f"{facts.feasible}; " if facts.feasible else "the request fits the cluster; "
        s.cond("Feasible", "True", JobReason.FEASIBLE, f"{fits}creating the trainer Job")
        st.phase = "Pending"
        return st
    _observe_trainer(st, trainer, now)
    image = st.fingerprint.image if st.fingerprint else None
    if trainer.complete or trainer.failed_for_good:
        _finish(s, trainer)
    else:
        _active_phase(s, job, trainer)
    _signals(s, job)
    _fingerprint_image(st, trainer, image)
    return st
