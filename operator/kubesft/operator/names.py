"""Deterministic names and labels of child objects.

Names are derived from the parent alone, so an operator restarted at any point finds
what it created before instead of creating a duplicate.
"""

from __future__ import annotations

import hashlib

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


MAX_LABEL_VALUE = 63
"""Job names become the `job-name` label of their pods, so they stay within a label value."""


def prepare_job(dataset: str, key: str) -> str:
    """`<dataset>-prep-<key>` (key: `g<generation>[-<source digest>]`, `dataset_source`); a
    name that would pass 63 characters gets a hash of the key instead."""
    name = f"{dataset}-prep-{key}"
    if len(name) <= MAX_LABEL_VALUE:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{dataset}-prep-{digest[: MAX_LABEL_VALUE - len(dataset) - 6]}"


def prepare_config(dataset: str, key: str) -> str:
    return prepare_job(dataset, key)


def dataset_stem(dataset: str, base: str = "") -> str:
    """Folder of every prepared generation of one SFTDataset inside the data volume."""
    return base.strip("/") or f"datasets/{dataset}"


def dataset_path(dataset: str, key: str, base: str = "") -> str:
    """Folder of one prepared generation inside the data volume."""
    return f"{dataset_stem(dataset, base)}/{key}"


def job_labels(job: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB: job, LABEL_COMPONENT: "trainer"}


def dataset_labels(dataset: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DATASET: dataset, LABEL_COMPONENT: "prepare"}


def passthrough_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(PASSTHROUGH_LABEL_PREFIXES)}
