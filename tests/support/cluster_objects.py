"""Creating kubesft objects in a test cluster, and standing in for finished steps."""

from __future__ import annotations

from typing import Any

from kubesft.api import GROUP, SFT_DATASET, SFT_JOB, VERSION
from kubesft.operator.config import OperatorConfig
from kubesft.operator.kube import Kube
from tests.support.invalid_manifests import valid_job

CONFIG = OperatorConfig(trainer_image="kubesft/trainer:test", metrics_port=0)


def create(kube: Kube, namespace: str, obj: dict[str, Any]) -> None:
    plural = SFT_JOB.plural if obj["kind"] == "SFTJob" else SFT_DATASET.plural
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)


def make_dataset_ready(kube: Kube, namespace: str, name: str = "valid-dataset") -> None:
    """Stand in for a finished preparation Job (tests/e2e runs the real one)."""
    kube.patch_status(
        SFT_DATASET.plural,
        namespace,
        name,
        {
            "phase": "Ready",
            "observedGeneration": 1,
            "fingerprint": "f" * 64,
            "location": f"pvc://kubesft-data/datasets/{name}/g1",
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
