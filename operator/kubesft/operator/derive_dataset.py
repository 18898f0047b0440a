"""Pure: the status of an SFTDataset from its preparation Job."""

from __future__ import annotations

from kubesft.api import SFTDataset, SFTDatasetStatus
from kubesft.api.base import ConditionStatus
from kubesft.api.dataset import DatasetStats, RowError
from kubesft.api.report import ExitCode, PrepareTermination, TrainerReason
from kubesft.operator.conditions import set_condition
from kubesft.operator.observe import ObservedJob, Termination

MAX_ERRORS = 20
EMPTY = PrepareTermination(phase="Ready", reason=TrainerReason.PREPARED)
"""Stands in for a success whose termination message is missing (an older image)."""
PREPARE_FAILED = "PrepareFailed"
"""Ready=False reason when `prepare` failed without saying why (killed, no message)."""


def _failure_reason(failure: Termination | None, failed: PrepareTermination | None) -> str:
    """`prepare`'s own reason; else DatasetInvalid for its INVALID exit, else PrepareFailed."""
    if failed is not None:
        return failed.reason.value
    if failure is not None and failure.exit_code == ExitCode.INVALID:
        return TrainerReason.DATASET_INVALID.value
    return PREPARE_FAILED


def _rows(errors: list[RowError], limit: int = 5) -> str:
    shown = "; ".join(
        f"row {e.row} {e.field}: {e.message}".replace("  ", " ") for e in errors[:limit]
    )
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return shown + more


def derive_dataset_status(
    dataset: SFTDataset, job: ObservedJob | None, location: str, now: str
) -> SFTDatasetStatus:
    """Pending → Validating → Ready | Failed, for the dataset's current generation."""
    current = dataset.status or SFTDatasetStatus()
    generation = dataset.metadata.generation
    status = current.model_copy(deep=True)
    status.observed_generation = generation

    def ready(state: ConditionStatus, reason: str, message: str) -> None:
        status.conditions = set_condition(
            status.conditions, "Ready", state, reason, message, generation, now
        )

    if job is None:
        if current.observed_generation == generation and current.phase in ("Ready", "Failed"):
            return current  # finished earlier; its Job may have been cleaned up since
        status.phase = "Pending"
        ready("False", "Preparing", "the preparation Job is being created")
        return status
    if job.complete:
        success = job.last_success()
        done = (success.prepare() if success else None) or EMPTY
        status.phase = "Ready"
        status.stats = done.stats or DatasetStats()
        status.fingerprint = done.fingerprint
        status.errors = done.errors[:MAX_ERRORS]
        status.location = location
        stats = status.stats
        ready(
            "True",
            "Prepared",
            f"{stats.train} train and {stats.eval} eval examples "
            f"({stats.invalid} invalid, {stats.duplicates_removed} duplicates removed)",
        )
        return status
    if job.failed_for_good:
        failure = job.last_failure()
        failed = failure.prepare() if failure else None
        status.phase = "Failed"
        status.errors = failed.errors[:MAX_ERRORS] if failed else []
        if failed is not None and failed.stats is not None:
            status.stats = failed.stats
        message = failure.text() if failure else job.conditions.get("Failed", ("", "", ""))[2]
        if status.errors and "row " not in message:
            message = f"{message}: {_rows(status.errors)}"
        ready("False", _failure_reason(failure, failed), message)
        return status
    status.phase = "Validating"
    ready("False", "Validating", "reading, validating and splitting the data")
    return status
