"""SFTJob.status: what the operator and the trainer report back onto the resource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from kubesft.api.base import Condition, StatusModel
from kubesft.api.held_out import HeldOutScore
from kubesft.api.mixture import MAX_MEMBERS, DatasetEval, MixtureEntry
from kubesft.api.retention import RetentionStatus
from kubesft.api.tracking import TrackingStatus

JobPhase = Literal[
    "Pending", "WaitingForDataset", "Queued", "Running", "Succeeded", "Failed", "Suspended"
]
LOSS_HISTORY = 50
EVAL_HISTORY = 20
"""Evaluations kept in metrics.evalHistory (the Overfitting rule looks at the last few)."""
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


def is_finished(status: Mapping[str, Any] | None, generation: int | None) -> bool:
    """Done for good: Succeeded, or Failed after it started, or Failed and not edited since.

    A job that failed before its trainer started (Infeasible, InvalidSpec) trained nothing
    and its spec may still change (immutability starts with `startTime`); its condition
    tells the user what to change, so a new generation runs it again.
    """
    status = status or {}
    if status.get("phase") not in TERMINAL_PHASES:
        return False
    if status.get("phase") == "Succeeded" or status.get("startTime"):
        return True
    observed = status.get("observedGeneration")
    return observed is None or generation is None or generation <= observed


class JobReason:
    """Reasons the operator writes on SFTJob conditions and Events (Kubeflow Trainer keeps
    its reason constants beside its API types too). The trainer's own reasons, which reach
    the Complete and Failed conditions as they are, are `kubesft.api.report.TrainerReason`.
    """

    DATASET_NOT_FOUND = "DatasetNotFound"
    DATASET_NOT_READY = "DatasetNotReady"
    DATASET_FAILED = "DatasetFailed"
    DATASET_READY = "DatasetReady"
    FEASIBLE = "Feasible"
    INFEASIBLE = "Infeasible"
    SUSPENDED = "Suspended"
    WAITING_FOR_QUEUE = "WaitingForQueue"
    ADMITTED = "Admitted"
    PODS_PENDING = "PodsPending"
    TRAINER_RUNNING = "TrainerRunning"
    RESTARTING = "Restarting"
    """A trainer pod ended early and its replacement has not started yet."""
    FINISHING = "Finishing"
    """Every trainer pod that had to finish did; the Job is not yet marked Complete."""
    FINISHED = "Finished"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TRAINER_FAILED = "TrainerFailed"
    """The trainer failed without saying why (no termination message)."""
    TRAINER_RESTARTED = "TrainerRestarted"
    """Event: a trainer pod ended and the Job started another."""
    OVERFITTING = "EvalLossRising"
    """Condition Overfitting True: eval loss rose while train loss fell (see
    `kubesft.api.overfitting`)."""
    NOT_OVERFITTING = "EvalLossNotRising"
    FORGETTING = "RetentionLossRising"
    """Condition Forgetting True: the retention loss rose past its threshold (see
    `kubesft.api.retention`)."""
    NOT_FORGETTING = "RetentionLossWithinThreshold"


class Progress(StatusModel):
    """Training progress, updated by the trainer at most every few seconds."""

    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    percent: int = 0
    """0-100, for the Progress column."""
    eta_seconds: int | None = None
    tokens_per_second: float | None = None
    peak_gpu_memory_gi_b: float | None = None
    """Most GPU memory torch allocated on rank 0 so far, in GiB; set on GPUs only. Compare
    with preflight.estimatedGpuMemoryGiB before sizing the next job."""
    resumed_from_step: int | None = None
    """The checkpoint step the current trainer pod resumed from (after a preemption or a
    restart); unset for a run that started fresh."""
    updated_at: str | None = None


class Metrics(StatusModel):
    """Latest training and evaluation metrics."""

    train_loss: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    token_accuracy: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    loss_history: list[float] = Field(default_factory=list, max_length=LOSS_HISTORY)
    """Recent train losses, oldest first, for sparklines (`kubesft status`)."""
    eval_history: list[EvalPoint] = Field(default_factory=list, max_length=EVAL_HISTORY)
    """Recent evaluations, oldest first: the Overfitting condition is derived from them."""
    eval_by_dataset: list[DatasetEval] = Field(default_factory=list, max_length=MAX_MEMBERS)
    """The latest evaluation per member of a mixture (spec.datasets); evalLoss is over all."""


class EvalPoint(StatusModel):
    """One evaluation with the training loss beside it."""

    step: int
    eval_loss: float
    train_loss: float | None = None
    """Mean training loss over the steps since the previous evaluation (less noisy than
    the last step's); unset when no step ran in between."""


class CheckpointInfo(StatusModel):
    """A complete checkpoint on the output volume."""

    step: int
    path: str
    eval_loss: float | None = None
    created_at: str | None = None


class Sample(StatusModel):
    """A greedy generation for one eval prompt, before and after training."""

    prompt: str
    before: str = ""
    after: str = ""


class EvaluationResult(StatusModel):
    """Final evaluation: loss, perplexity, token accuracy and sample generations."""

    eval_loss: float | None = None
    perplexity: float | None = None
    token_accuracy: float | None = None
    samples: list[Sample] = Field(default_factory=list)
    held_out: HeldOutScore | None = None
    """Exact match of the samples' answers against their references, before and after."""
    by_dataset: list[DatasetEval] = Field(default_factory=list, max_length=MAX_MEMBERS)
    """Final eval loss per member of a mixture (spec.datasets)."""


class OutputInfo(StatusModel):
    """Where the trained adapter or model was written."""

    path: str
    kind: Literal["adapter", "merged", "full"] = "adapter"


class Preflight(StatusModel):
    """Estimates made before any GPU pod starts."""

    estimated_gpu_memory_gi_b: float | None = Field(default=None, alias="estimatedGpuMemoryGiB")
    estimated_tokens: int | None = None
    truncated_fraction: float | None = None
    per_turn_conversations: int | None = None
    """Conversations trained one assistant turn per example, because the chat template
    renders earlier turns differently once later turns exist (Qwen3, gpt-oss, ...)."""
    per_turn_examples_added: int | None = None
    """Examples those conversations added beyond one each."""


class Fingerprint(StatusModel):
    """What exactly was trained: data, configuration and image."""

    dataset: str | None = None
    """The SFTDataset's fingerprint (sha256 of its normalized data) the trainer read."""
    config: str | None = None
    """sha256 of the trainer's resolved configuration (spec with defaults, and runtime)."""
    image: str | None = None
    """The trainer image as the node ran it: its imageID (digest) when the node reports one,
    else the image reference."""


class SFTJobStatus(StatusModel):
    """Observed state of an SFTJob."""

    phase: JobPhase = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    progress: Progress | None = None
    metrics: Metrics | None = None
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    best_checkpoint: str | None = None
    evaluation: EvaluationResult | None = None
    output: OutputInfo | None = None
    preflight: Preflight | None = None
    restarts: int = 0
    """Trainer pods started again after one ended early (a crash, an eviction); a failure
    that is not retried adds none."""
    start_time: str | None = None
    completion_time: str | None = None
    fingerprint: Fingerprint | None = None
    tracking: TrackingStatus | None = None
    """The run's id in the experiment trackers (spec.tracking), set when it starts."""
    mixture: list[MixtureEntry] = Field(default_factory=list, max_length=MAX_MEMBERS)
    """The mixture the trainer drew (spec.datasets), reported before the first step."""
    retention: RetentionStatus | None = None
    """Loss on spec.evaluation.retention before training and at the latest evaluation."""
    observed_generation: int | None = None
    """The metadata.generation now in effect: its status was derived and what it changed
    was applied to the children. A finished job is not reconciled again, so an edit made
    after it finished is not in effect and this stays behind it."""
