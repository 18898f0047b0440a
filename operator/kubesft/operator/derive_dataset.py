"""Pure: the status of an SFTDataset from its preparation Job."""

from __future__ import annotations

from collections.abc import Sequence

from kubesft.api import SFTDataset, SFTDatasetStatus
from kubesft.api.base import ConditionStatus
from kubesft.api.dataset import SOURCE_NOT_FOUND, DatasetStats, RowError
from kubesft.operator.conditions import set_condition
from kubesft.operator.observe import ObservedJob

MAX_ERRORS = 20


def _rows(errors: list[RowError], limit: int = 5) -> str:
    shown = "; ".join(
        f"row {e.row} {e.field}: {e.message}".replace("  ", " ") for e in errors[:limit]
    )
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return shown + more


def derive_dataset_status(
    dataset: SFTDataset,
    job: ObservedJob | None,
    location: str,
    now: str,
    *,
    revision: str | None = None,
    missing: Sequence[str] = (),
) -> SFTDatasetStatus:
    """Pending → Validating → Ready | Failed, for the dataset's current generation.

    ``revision`` is the preparation key (`dataset_source`); ``missing`` names source objects
    that do not exist (Failed, SourceNotFound, until they do).
    """
    current = dataset.status or SFTDatasetStatus()
    generation = dataset.metadata.generation
    status = current.model_copy(deep=True)
    status.observed_generation = generation
    status.revision = revision

    def ready(state: ConditionStatus, reason: str, message: str) -> None:
        status.conditions = set_condition(
            status.conditions, "Ready", state, reason, message, generation, now
        )

    if missing:
        status.phase = "Failed"
        ready("False", SOURCE_NOT_FOUND, "; ".join(missing))
        return status

    if job is None:
        if current.observed_generation == generation and current.phase in ("Ready", "Failed"):
            return current.model_copy(update={"revision": revision})  # finished earlier
        status.phase = "Pending"
        ready("False", "Preparing", "the preparation Job is being created")
        return status
    if job.complete:
        success = job.last_success()
        summary = (success.summary() if success else None) or {}
        status.phase = "Ready"
        status.stats = DatasetStats.model_validate(summary.get("stats") or {})
        status.fingerprint = summary.get("fingerprint")
        status.errors = [RowError.model_validate(e) for e in summary.get("errors", [])][:MAX_ERRORS]
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
        summary = (failure.summary() if failure else None) or {}
        status.phase = "Failed"
        status.errors = [RowError.model_validate(e) for e in summary.get("errors", [])][:MAX_ERRORS]
        if summary.get("stats"):
            status.stats = DatasetStats.model_validate(summary["stats"])
        message = failure.text() if failure else job.conditions.get("Failed", ("", "", ""))[2]
        if status.errors and "row " not in message:
            message = f"{message}: {_rows(status.errors)}"
        reason = summary.get("reason") or (
            "DatasetInvalid" if failure and failure.exit_code == 2 else "PrepareFailed"
        )
        ready("False", str(reason), message)
        return status
    status.phase = "Validating"
    ready("False", "Validating", "reading, validating and splitting the data")
    return status
