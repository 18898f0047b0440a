"""Deterministic names and labels of child objects.

Names are derived from the parent alone, so an operator restarted at any point finds
what it created before instead of creating a duplicate.
"""

from __future__ import annotations

GROUP_LABEL = "kubesft.io"
LABEL_JOB = "kubesft.io/job"
LABEL_DATASET = "kubesft.io/dataset"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubesft"
TRAINER_CONTAINER = "trainer"
PREPARE_CONTAINER = "prepare"

# Labels copied from an SFTJob onto its batch Job so Kueue can admit it.
PASSTHROUGH_LABEL_PREFIXES = ("kueue.x-k8s.io/",)


def trainer_job(job: str) -> str:
    return f"{job}-train"


def trainer_config(job: str) -> str:
    return f"{job}-train-config"


def trainer_service(job: str) -> str:
    """Headless Service giving multi-node pods stable DNS names (<job>-train-<i>.<svc>)."""
    return f"{job}-train"


def trainer_account(job: str) -> str:
    return f"{job}-trainer"


def prepare_job(dataset: str, generation: int) -> str:
    return f"{dataset}-prep-g{generation}"


def prepare_config(dataset: str, generation: int) -> str:
    return f"{dataset}-prep-g{generation}"


def dataset_path(dataset: str, generation: int, base: str = "") -> str:
    """Folder of one prepared generation inside the data volume."""
    stem = base.strip("/") or f"datasets/{dataset}"
    return f"{stem}/g{generation}"


def job_labels(job: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB: job, LABEL_COMPONENT: "trainer"}


def dataset_labels(dataset: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DATASET: dataset, LABEL_COMPONENT: "prepare"}


def passthrough_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(PASSTHROUGH_LABEL_PREFIXES)}
