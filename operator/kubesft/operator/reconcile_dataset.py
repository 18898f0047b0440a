"""SFTDataset: make sure this generation's preparation Job exists, then mirror its result."""

from __future__ import annotations

from kubesft.api import SFT_DATASET, SFTDataset, parse_object
from kubesft.operator import build_dataset, names
from kubesft.operator.config import OperatorConfig
from kubesft.operator.derive_dataset import derive_dataset_status
from kubesft.operator.kube import Kube, now_rfc3339
from kubesft.operator.observe import ObservedJob, observe_job
from kubesft.operator.pod_parts import location_uri
from kubesft.operator.status_patch import status_dict, write_status


def _observe(kube: Kube, dataset: SFTDataset, config: OperatorConfig) -> ObservedJob | None:
    ns, name = dataset.metadata.namespace or "", dataset.metadata.name or ""
    job_name = names.prepare_job(name, dataset.metadata.generation or 1)
    job = kube.get("Job", ns, job_name)
    if job is None:
        status = dataset.status
        if (
            status is not None
            and status.phase in ("Ready", "Failed")
            and status.observed_generation == dataset.metadata.generation
        ):
            return None  # done earlier and cleaned up: never prepare the same data twice
        kube.ensure(build_dataset.build_config_map(dataset))
        job = kube.ensure(build_dataset.build_job(dataset, config))
        kube.event(dataset.to_dict(), "Normal", "Preparing", f"created Job {job_name}")
    return observe_job(job, kube.job_pods(ns, job_name), names.PREPARE_CONTAINER)


def reconcile_dataset(kube: Kube, config: OperatorConfig, namespace: str, name: str) -> str | None:
    """Converge one SFTDataset; returns its phase (None when it is gone)."""
    raw = kube.get_custom(SFT_DATASET.plural, namespace, name)
    if raw is None:
        return None
    dataset = parse_object(raw)
    assert isinstance(dataset, SFTDataset)
    observed = _observe(kube, dataset, config)
    location = location_uri(build_dataset.storage(dataset, config))
    status = derive_dataset_status(dataset, observed, location, now_rfc3339())
    old = status_dict(dataset.status)
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    message = ready.message if ready else status.phase
    write_status(kube, SFT_DATASET.plural, raw, old, status, message)
    return status.phase
