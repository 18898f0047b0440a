"""SFTDataset: read its sources, make sure the preparation Job of their current key exists,
then mirror its result.

A preparation is keyed on the spec's generation and the sources' contents
(`dataset_source`): an edited ConfigMap or a new `kubesft.io/refresh` annotation prepares
again, a missing source or claim is a SourceNotFound condition naming it. When a new
preparation starts, superseded preparation Jobs are retired (stopped and removed by
kube-controller-manager), and the new pod removes the superseded data folders but the
ones unfinished SFTJobs read.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubesft.api import (
    SFT_DATASET,
    SFT_JOB,
    ObjectMeta,
    SFTDataset,
    SFTDatasetStatus,
    parse_object,
)
from kubesft.api.dataset import SOURCE_NOT_FOUND
from kubesft.api.job_status import TERMINAL_PHASES
from kubesft.operator import build_dataset, names
from kubesft.operator.config import OperatorConfig
from kubesft.operator.dataset_readiness import names_read
from kubesft.operator.dataset_source import preparation_key, read_sources
from kubesft.operator.derive_dataset import derive_dataset_status
from kubesft.operator.kube import Kube, now_rfc3339
from kubesft.operator.observe import ObservedJob, observe_job
from kubesft.operator.owner import owner_reference
from kubesft.operator.pod_parts import location_uri
from kubesft.operator.status_patch import status_dict, write_status
from kubesft.operator.trainer_data import DATA_DIR

log = logging.getLogger("kubesft.operator")


def prepared_already(status: SFTDatasetStatus | None, generation: int | None, key: str) -> bool:
    """Whether ``key`` was prepared (Ready or Failed on its data) and its Job since removed.

    A status without a revision (written before revisions were recorded) is adopted as the
    preparation of the current key: an upgrade does not prepare every dataset again.
    """
    if status is None or status.phase not in ("Ready", "Failed"):
        return False
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    if ready is not None and ready.reason == SOURCE_NOT_FOUND:
        return False  # nothing was prepared: the source is there now
    return status.observed_generation == generation and status.revision in (None, key)


def _observe(
    kube: Kube, dataset: SFTDataset, config: OperatorConfig, key: str
) -> ObservedJob | None:
    ns, name = dataset.metadata.namespace or "", dataset.metadata.name or ""
    job_name = names.prepare_job(name, key)
    job = kube.get("Job", ns, job_name)
    if job is None:
        if prepared_already(dataset.status, dataset.metadata.generation, key):
            return None  # done earlier and cleaned up: never prepare the same data twice
        keep = generations_in_use(kube, dataset, config)
        kube.ensure(build_dataset.build_config_map(dataset, key))
        job = kube.ensure(build_dataset.build_job(dataset, config, key, keep))
        owner = owner_reference("Job", ObjectMeta.model_validate(job["metadata"]), "batch/v1")
        kube.set_owner("ConfigMap", ns, names.prepare_config(name, key), owner)  # goes with it
        kube.event(dataset.to_dict(), "Normal", "Preparing", _why(dataset, key, job_name))
        retire_superseded_jobs(kube, ns, name, job_name)
    return observe_job(job, kube.job_pods(ns, job_name), names.PREPARE_CONTAINER)


def _why(dataset: SFTDataset, key: str, job_name: str) -> str:
    status = dataset.status
    same_spec = status is not None and status.observed_generation == dataset.metadata.generation
    if same_spec and status is not None and status.revision and status.revision != key:
        return (
            f"created Job {job_name}: the source changed since {status.revision}, preparing {key}"
        )
    return f"created Job {job_name}"


def generations_in_use(kube: Kube, dataset: SFTDataset, config: OperatorConfig) -> list[str]:
    """Data folders (keys) of this dataset that unfinished SFTJobs' trainers read."""
    ns, name = dataset.metadata.namespace or "", dataset.metadata.name or ""
    base = dataset.spec.storage.path if dataset.spec.storage else ""
    stem = names.dataset_stem(name, base)
    claim = build_dataset.data_claim(dataset, config)
    # build_trainer.dataset_dir; the second: trainers created before mixtures
    prefixes = (f"{DATA_DIR}/{claim}/{stem}/", f"{DATA_DIR}/{stem}/")
    keys = []
    for job in kube.list_custom(SFT_JOB.plural, ns):
        if name not in names_read(job):
            continue
        if (job.get("status") or {}).get("phase") in TERMINAL_PHASES:
            continue
        cm = kube.get("ConfigMap", ns, names.trainer_config(job["metadata"]["name"]))
        try:
            runtime = json.loads((cm or {}).get("data", {}).get("config.json", "{}"))["runtime"]
        except (KeyError, TypeError, ValueError):
            continue  # no trainer yet: it will read the dataset's next location
        for folder in runtime_dirs(runtime, name):
            prefix = next((p for p in prefixes if folder.startswith(p)), None)
            if prefix is not None:
                keys.append(folder.removeprefix(prefix).strip("/"))
    return sorted(set(keys))


def runtime_dirs(runtime: dict[str, Any], dataset: str) -> list[str]:
    """The in-pod folders of `dataset` in a trainer ConfigMap's runtime: its entries in
    runtime.datasets and runtime.retention, or datasetDir (one dataset, written by
    operators before mixtures)."""
    entries = [*(runtime.get("datasets") or []), runtime.get("retention")]
    dirs = [
        str(e.get("dir", "")) for e in entries if isinstance(e, dict) and e.get("name") == dataset
    ]
    legacy = runtime.get("datasetDir")
    return dirs + ([str(legacy)] if legacy else [])


def retire_superseded_jobs(kube: Kube, ns: str, dataset: str, current: str) -> None:
    """Let this dataset's other preparation Jobs end now and be removed at once.

    The operator holds no `delete` on Jobs (the chart grants what it needs, no more): a
    one-second deadline stops a superseded Job still running (its pod never publishes or
    removes anything), and `ttlSecondsAfterFinished: 0` has kube-controller-manager delete
    it with its pods and its spec ConfigMap (owned by the Job).
    """
    selector = f"{names.LABEL_DATASET}={dataset},{names.LABEL_COMPONENT}=prepare"
    retire = {"spec": {"ttlSecondsAfterFinished": 0, "activeDeadlineSeconds": 1}}
    for job in kube.list_jobs(ns, selector):
        old = job["metadata"]["name"]
        if old != current and job.get("spec", {}).get("ttlSecondsAfterFinished") != 0:
            log.info("SFTDataset %s/%s: retiring superseded Job %s", ns, dataset, old)
            kube.patch_job(ns, old, retire)


def reconcile_dataset(kube: Kube, config: OperatorConfig, namespace: str, name: str) -> str | None:
    """Converge one SFTDataset; returns its phase (None when it is gone)."""
    raw = kube.get_custom(SFT_DATASET.plural, namespace, name)
    if raw is None:
        return None
    dataset = parse_object(raw)
    assert isinstance(dataset, SFTDataset)
    sources = read_sources(kube, dataset, config)
    key = preparation_key(dataset, sources)
    missing, observed = sources.missing, None
    current = dataset.status
    if missing and current is not None and current.phase == "Ready":
        # Prepared data outlives its source: jobs may still use it until the spec changes.
        if prepared_already(current, dataset.metadata.generation, current.revision or key):
            missing, key = [], current.revision or key
    elif not missing:
        observed = _observe(kube, dataset, config, key)
    location = location_uri(build_dataset.storage(dataset, config, key))
    status = derive_dataset_status(
        dataset, observed, location, now_rfc3339(), revision=key, missing=missing
    )
    old = status_dict(dataset.status)
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    message = ready.message if ready else status.phase
    write_status(kube, SFT_DATASET.plural, raw, old, status, message)
    return status.phase
