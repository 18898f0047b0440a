"""Creating kubesft objects in a test cluster, and standing in for finished steps."""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import GROUP, SFT_DATASET, SFT_JOB, VERSION, SFTDataset, parse_object
from kubesft.operator import build_dataset
from kubesft.operator.config import OperatorConfig
from kubesft.operator.dataset_source import preparation_key, read_sources
from kubesft.operator.kube import Kube
from kubesft.operator.pod_parts import location_uri
from tests.support.invalid_manifests import valid_job

CONFIG = OperatorConfig(trainer_image="kubesft/trainer:test", metrics_port=0)


def create(kube: Kube, namespace: str, obj: dict[str, Any]) -> None:
    plural = SFT_JOB.plural if obj["kind"] == "SFTJob" else SFT_DATASET.plural
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)


def dataset_inputs() -> list[dict[str, Any]]:
    """What `valid_dataset` reads: its source ConfigMap and the data claim (no volume runs)."""
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows = json.dumps({"messages": turns}) + "\n"
    claim_spec = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "data"},
         "data": {"data.jsonl": rows}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": CONFIG.data_claim}, "spec": claim_spec},
    ]  # fmt: skip


def ensure_dataset_inputs(kube: Kube, namespace: str) -> None:
    for manifest in dataset_inputs():
        manifest["metadata"]["namespace"] = namespace
        kube.ensure(manifest)


def make_dataset_ready(kube: Kube, namespace: str, name: str = "valid-dataset") -> None:
    """Stand in for a finished preparation Job (tests/e2e runs the real one), filed under the
    preparation key the dataset's sources give, as the operator files it."""
    ensure_dataset_inputs(kube, namespace)
    dataset = parse_object(kube.get_custom(SFT_DATASET.plural, namespace, name) or {})
    assert isinstance(dataset, SFTDataset)
    key = preparation_key(dataset, read_sources(kube, dataset, CONFIG))
    kube.patch_status(
        SFT_DATASET.plural,
        namespace,
        name,
        {
            "phase": "Ready",
            "observedGeneration": 1,
            "fingerprint": "f" * 64,
            "location": location_uri(build_dataset.storage(dataset, CONFIG, key)),
            "revision": key,
        },
    )


# Integration tests check what the operator creates, not what runs: their trainer pods
# must stay Pending even when an e2e node runner shares the session's control plane.
UNSCHEDULABLE = {"gpus": 1, "nodeSelector": {"kubesft.io/test-node": "none"}}


def sft_job(namespace: str, name: str = "job", **spec: Any) -> dict[str, Any]:
    obj = valid_job(name)
    obj["spec"]["dataset"] = {"name": "valid-dataset"}
    obj["spec"]["resources"] = dict(UNSCHEDULABLE)
    obj["spec"].update(spec)
    return obj
