"""Pure: whether every SFTDataset an SFTJob reads is Ready, as its DatasetReady condition.

A job reads its training members (spec.dataset, or each of spec.datasets) and the
retention set (spec.evaluation.retention); it waits until all of them are Ready at their
current generation. The condition names each one that is not, with what its own Ready
condition says (a Failed member's rows), so one look tells what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubesft.api import SFTDataset, SFTJob
from kubesft.api.base import ConditionStatus
from kubesft.api.job_status import JobReason

REASON_ORDER = (JobReason.DATASET_FAILED, JobReason.DATASET_NOT_FOUND, JobReason.DATASET_NOT_READY)
"""The condition's reason when several datasets are not Ready: the one needing a fix first
(a Failed dataset never becomes Ready on its own; a missing one may still be applied)."""


def names_read(job: Mapping[str, Any]) -> set[str]:
    """The SFTDatasets a raw SFTJob object reads (its members and retention set), as
    `SFTJobSpec.dataset_names` gives them for a parsed one: the watch side reads raw
    objects, some of which may not parse."""
    spec = job.get("spec") or {}
    named = [spec.get("dataset"), *(spec.get("datasets") or [])]
    named.append((spec.get("evaluation") or {}).get("retention"))
    return {str(ref["name"]) for ref in named if isinstance(ref, dict) and ref.get("name")}


def _field(job: SFTJob, name: str) -> str:
    """The spec field that names dataset `name`."""
    retention = job.spec.evaluation.retention
    if retention is not None and retention.name == name:
        return "spec.evaluation.retention.name"
    return "spec.dataset.name" if job.spec.dataset is not None else "spec.datasets"


def is_ready(dataset: SFTDataset) -> bool:
    """Ready, at the generation its spec has now (an edited dataset is prepared again)."""
    st = dataset.status
    return (
        st is not None
        and st.phase == "Ready"
        and st.observed_generation == dataset.metadata.generation
    )


def _problem(job: SFTJob, name: str, dataset: SFTDataset | None) -> tuple[str, str] | None:
    """(reason, message) for a dataset that is not Ready; None for a Ready one."""
    if dataset is None:
        return JobReason.DATASET_NOT_FOUND, (
            f"SFTDataset {name!r} does not exist in this namespace: create it or fix "
            f"{_field(job, name)}"
        )
    if is_ready(dataset):
        return None
    ds = dataset.status
    phase = ds.phase if ds else "Pending"
    detail = next((c.message for c in (ds.conditions if ds else []) if c.type == "Ready"), "")
    reason = JobReason.DATASET_FAILED if phase == "Failed" else JobReason.DATASET_NOT_READY
    return reason, f"SFTDataset {name!r} is {phase}" + (f": {detail}" if detail else "")


def dataset_readiness(job: SFTJob, found: Sequence[SFTDataset]) -> tuple[ConditionStatus, str, str]:
    """Status, reason and message of the DatasetReady condition.

    `found` holds the SFTDatasets of `job.spec.dataset_names()` that exist; the others are
    missing. Not Ready: one "SFTDataset 'x' is ..." clause per dataset that is not, in spec
    order, joined by "; ", and the reason of `REASON_ORDER` that comes first.
    """
    by_name = {d.metadata.name: d for d in found}
    wanted = job.spec.dataset_names()
    problems = [p for name in wanted if (p := _problem(job, name, by_name.get(name)))]
    if problems:
        reasons = {reason for reason, _ in problems}
        reason = next(r for r in REASON_ORDER if r in reasons)
        return "False", reason, "; ".join(message for _, message in problems)
    if len(wanted) == 1:
        return "True", JobReason.DATASET_READY, f"SFTDataset {wanted[0]!r} is Ready"
    quoted = ", ".join(repr(name) for name in wanted)
    return "True", JobReason.DATASET_READY, f"SFTDatasets {quoted} are Ready"
