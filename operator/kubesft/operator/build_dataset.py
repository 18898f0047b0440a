"""Pure builders: an SFTDataset → its preparation Job and the ConfigMap it reads.

Each takes the preparation key (`dataset_source.preparation_key`): the generation of the
spec plus a digest of the source contents, which names the Job and the data folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubesft.api import SFTDataset
from kubesft.api.base import PVCLocation
from kubesft.api.dataset import DataSource
from kubesft.operator import names
from kubesft.operator.config import OperatorConfig
from kubesft.operator.owner import child_metadata, owner_reference
from kubesft.operator.pod_parts import (
    CONFIG_DIR,
    TERMINATION_LOG,
    aws_env,
    config_volume,
    env_secret,
    env_value,
    join,
    mount,
    pod_failure_policy,
    pvc_volume,
    resources,
)
from kubesft.operator.security import container_security_context, pod_security_context

DATA_DIR = "/data"
SOURCE_DIR = "/source"
EVAL_SOURCE_DIR = "/eval-source"


def data_claim(dataset: SFTDataset, config: OperatorConfig) -> str:
    """The claim the dataset's prepared generations go to: spec.storage's, else the
    operator's data claim."""
    return dataset.spec.storage.claim_name if dataset.spec.storage else config.data_claim


def storage(dataset: SFTDataset, config: OperatorConfig, key: str) -> PVCLocation:
    """Where the data prepared under ``key`` goes."""
    name = dataset.metadata.name or ""
    base = dataset.spec.storage
    return PVCLocation(
        claim_name=data_claim(dataset, config),
        path=names.dataset_path(name, key, base.path if base else ""),
    )


def _mounted_source(
    source: DataSource, volume: str, path: str
) -> tuple[list[Any], list[Any], str | None]:
    """Volumes, mounts and the local path for ConfigMap and PVC sources (others: none)."""
    if source.config_map:
        cm = source.config_map
        vol = {
            "name": volume,
            "configMap": {"name": cm.name, "items": [{"key": cm.key, "path": cm.key}]},
        }
        return [vol], [mount(volume, path, read_only=True)], f"{path}/{cm.key}"
    if source.pvc:
        vol = pvc_volume(volume, source.pvc.claim_name, read_only=True)
        return [vol], [mount(volume, path, read_only=True)], join(path, source.pvc.path)
    return [], [], None


def _source_env(source: DataSource | None) -> list[dict[str, Any]]:
    if source is None:
        return []
    if source.hf and source.hf.token_secret_ref:
        return [env_secret("HF_TOKEN", source.hf.token_secret_ref)]
    if source.url:
        return aws_env(source.url.credentials_secret_ref)
    return []


def build_config_map(dataset: SFTDataset, key: str) -> dict[str, Any]:
    name = dataset.metadata.name or ""
    spec_json = json.dumps(dataset.spec.to_manifest(), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            names.prepare_config(name, key),
            dataset.metadata.namespace or "",
            names.dataset_labels(name),
            owner_reference("SFTDataset", dataset.metadata),
        ),
        "data": {"dataset.json": spec_json},
    }


def prepare_command(
    dataset: SFTDataset, config: OperatorConfig, key: str, keep: Sequence[str] = ()
) -> list[str]:
    """`prepare` into the key's folder; once done it removes the other prepared generations
    of this dataset but ``keep`` (folder names that running SFTJobs read)."""
    out = join(DATA_DIR, storage(dataset, config, key).path)
    cmd = [
        config.python,
        "-m",
        "kubesft_trainer",
        "prepare",
        "--spec",
        f"{CONFIG_DIR}/dataset.json",
    ]
    cmd += ["--output", out, "--termination-log", TERMINATION_LOG]
    cmd += ["--keep-generations", ",".join(sorted({key, *keep}))]
    _, _, source_path = _mounted_source(dataset.spec.source, "source", SOURCE_DIR)
    if source_path:
        cmd += ["--source-path", source_path]
    eval_source = dataset.spec.split.eval_source
    if eval_source:
        _, _, eval_path = _mounted_source(eval_source, "eval-source", EVAL_SOURCE_DIR)
        if eval_path:
            cmd += ["--eval-source-path", eval_path]
    return cmd


def build_job(
    dataset: SFTDataset, config: OperatorConfig, key: str, keep: Sequence[str] = ()
) -> dict[str, Any]:
    spec, name = dataset.spec, dataset.metadata.name or ""
    store = storage(dataset, config, key)
    volumes = [
        config_volume("config", names.prepare_config(name, key)),
        pvc_volume("data", store.claim_name),
    ]
    mounts = [mount("config", CONFIG_DIR, read_only=True), mount("data", DATA_DIR)]
    for source, volume, path in (
        (spec.source, "source", SOURCE_DIR),
        (spec.split.eval_source, "eval-source", EVAL_SOURCE_DIR),
    ):
        if source is not None:
            vols, mnts, _ = _mounted_source(source, volume, path)
            volumes += vols
            mounts += mnts
    container = {
        "name": names.PREPARE_CONTAINER,
        "image": spec.image or config.trainer_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": prepare_command(dataset, config, key, keep),
        "env": [
            env_value("PYTHONUNBUFFERED", "1"),
            *_source_env(spec.source),
            *_source_env(spec.split.eval_source),
        ],
        "resources": resources(config.prepare_cpu, config.prepare_memory),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            names.prepare_job(name, key),
            dataset.metadata.namespace or "",
            names.dataset_labels(name),
            owner_reference("SFTDataset", dataset.metadata),
        ),
        "spec": {
            "backoffLimit": config.prepare_backoff_limit,
            "ttlSecondsAfterFinished": config.prepare_ttl_seconds,
            "podFailurePolicy": pod_failure_policy(names.PREPARE_CONTAINER),
            "template": {
                "metadata": {"labels": names.dataset_labels(name)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(config.run_as_user),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
