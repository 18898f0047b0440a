"""The trainer→operator contract: what the trainer reports, how it ends, and its exit codes.

Written once here and used on both sides: the trainer (`kubesft_trainer`) fills these
models, the operator parses them; neither copies fields by name.

- `TrainerReport`: the SFTJob status fields the trainer owns (progress, metrics,
  checkpoints, evaluation, output, preflight, fingerprint). It is what the trainer's
  progress channel patches onto `SFTJob.status`; phase and conditions stay the operator's.
- `TrainerTermination`: the final report plus `phase`, `reason` and `message`, written to
  the container's termination message (at most 4 KiB, see `TERMINATION_MESSAGE_BYTES`).
- `PrepareTermination`: the same for the SFTDataset preparation container.
- `ExitCode`: how a container ends; the Job's `podFailurePolicy` fails at once on INVALID and
  NUMERICAL_INSTABILITY, ignores PREEMPTED, and retries the rest.
- `best_checkpoint`: the one rule that names the best checkpoint (pruning and status).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum, IntEnum
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

from kubesft.api.base import StatusModel
from kubesft.api.dataset import DatasetStats, RowError
from kubesft.api.job_status import (
    CheckpointInfo,
    EvaluationResult,
    Fingerprint,
    Metrics,
    OutputInfo,
    Preflight,
    Progress,
)
from kubesft.api.mixture import MixtureEntry
from kubesft.api.retention import RetentionStatus
from kubesft.api.tracking import TrackingStatus

TERMINATION_MESSAGE_BYTES = 4096
"""Kubernetes keeps at most this much of a container's termination message."""


class ExitCode(IntEnum):
    """Exit codes of every trainer-image subcommand (`train`, `prepare`, ...)."""

    OK = 0
    """Done; results are in the output directory and the termination message."""
    RETRYABLE = 1
    """Something outside the user's control failed (network, storage, a bug); try again."""
    INVALID = 2
    """Bad configuration or data: the user must change the spec or the dataset. The Job's
    podFailurePolicy fails at once on it (retrying cannot fix it)."""
    HUNG = 3
    """No optimizer step for `spec.training.hangTimeoutSeconds` (a rank stuck in a collective
    or the data loader): retried from the last checkpoint like any retryable failure."""
    NUMERICAL_INSTABILITY = 4
    """A non-finite loss or gradient norm: the same data and settings would diverge again,
    so the podFailurePolicy fails at once; the last good checkpoint is kept."""
    PREEMPTED = 75
    """SIGTERM honoured (node drain, preemption, spot reclaim): a checkpoint at the step
    boundary, then exit. Ignored by the podFailurePolicy (not counted against
    `spec.retry.maxRestarts`); the Job's next pod resumes. sysexits' EX_TEMPFAIL."""


class TrainerReason(str, Enum):
    """Reasons the trainer image writes into its termination message.

    They reach the resource's conditions as they are (Complete/Failed of an SFTJob, Ready
    of an SFTDataset), so a user reads the trainer's own diagnosis, not a guess from the
    exit code.
    """

    def __str__(self) -> str:  # the value, as StrEnum (Python 3.11) would give
        return str(self.value)

    COMPLETED = "Completed"
    """Trained every planned step."""
    EARLY_STOPPED = "EarlyStopped"
    """spec.training.earlyStopping ended the run before its last planned step."""
    INVALID_SPEC = "InvalidSpec"
    """The configuration file or spec cannot be read or is invalid (exit INVALID)."""
    INVALID_INPUT = "InvalidInput"
    """The spec does not fit the data, the model or the node (exit INVALID)."""
    OUTPUT_IN_USE = "OutputInUse"
    """spec.output holds another run's checkpoints (exit INVALID): use a new output path."""
    TRAINING_ERROR = "TrainingError"
    """An unexpected error while training (exit RETRYABLE)."""
    PREEMPTED = "Preempted"
    """SIGTERM: checkpointed at a step boundary; the Job's next pod resumes (exit PREEMPTED)."""
    HUNG = "Hung"
    """The hang watchdog ended the run (exit HUNG)."""
    NUMERICAL_INSTABILITY = "NumericalInstability"
    """A non-finite loss or gradient norm stopped the run (exit NUMERICAL_INSTABILITY)."""
    PREPARED = "Prepared"
    """`prepare` wrote the dataset."""
    DATASET_INVALID = "DatasetInvalid"
    """`prepare` rejected the rows (exit INVALID); `errors` names them."""
    PREPARE_ERROR = "PrepareError"
    """An unexpected error while preparing (exit RETRYABLE)."""


class TrainerReport(StatusModel):
    """The SFTJob status fields the trainer reports; unset fields are left as they are."""

    progress: Progress | None = None
    metrics: Metrics | None = None
    checkpoints: list[CheckpointInfo] | None = None
    best_checkpoint: str | None = None
    """Path of the checkpoint `best_checkpoint()` picks among `checkpoints`."""
    evaluation: EvaluationResult | None = None
    output: OutputInfo | None = None
    preflight: Preflight | None = None
    fingerprint: Fingerprint | None = None
    tracking: TrackingStatus | None = None
    """The run's ids in the experiment trackers of `spec.tracking`."""
    mixture: list[MixtureEntry] | None = None
    """The mixture drawn for spec.datasets."""
    retention: RetentionStatus | None = None

    def status_fields(self) -> dict[str, Any]:
        """The set fields as a camelCase `SFTJob.status` merge patch (JSON types only)."""
        out: dict[str, Any] = self.model_dump(
            by_alias=True,
            exclude_none=True,
            mode="json",
            include=set(TrainerReport.model_fields),
        )
        return out


class TrainerTermination(TrainerReport):
    """The trainer's termination message: the final report and why it ended.

    `Running` is a pod that ended while its job goes on (Preempted: the next pod resumes).
    """

    phase: Literal["Succeeded", "Failed", "Running"]
    reason: TrainerReason
    message: str = ""
    """One line for a human; for failures it names the field or row to change."""
    truncated: bool = False
    """True when fields were shortened or dropped to fit the 4 KiB limit."""


class PrepareTermination(StatusModel):
    """The `prepare` container's termination message."""

    phase: Literal["Ready", "Failed"]
    reason: TrainerReason
    message: str = ""
    stats: DatasetStats | None = None
    fingerprint: str | None = None
    """sha256 of the normalized data (`SFTDataset.status.fingerprint`)."""
    errors: list[RowError] = Field(default_factory=list)
    truncated: bool = False


Termination = TypeVar("Termination", bound=BaseModel)


def parse_termination(text: str, model: type[Termination]) -> Termination | None:
    """`text` as `model`, or None when it is not one (logs under FallbackToLogsOnError,
    a message from an older image, or nothing at all)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


class Scored(Protocol):
    """A checkpoint as far as choosing the best one goes."""

    @property
    def step(self) -> int: ...

    @property
    def eval_loss(self) -> float | None: ...


Checkpoint = TypeVar("Checkpoint", bound=Scored)


def best_checkpoint(checkpoints: Iterable[Checkpoint]) -> Checkpoint | None:
    """The checkpoint with the lowest eval loss, the earliest step among equals; None when
    none was evaluated.

    Earliest on ties as in Hugging Face's Trainer (`best_model_checkpoint` moves only on a
    strictly better metric): a later checkpoint that is no better has no claim to be kept.
    """
    scored = [c for c in checkpoints if c.eval_loss is not None]
    return min(scored, key=lambda c: (c.eval_loss, c.step)) if scored else None
