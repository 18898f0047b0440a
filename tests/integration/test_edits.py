"""Edits of a started SFTJob act or are refused (real apiserver, the operator's reconcile).

Every spec field baked into the trainer's ConfigMap or pod template is fixed by CEL once
status.startTime is set, with a message saying what works instead; the deadline and the
TTL follow edits onto the trainer Job until the job finished. tests/e2e/test_edits.py
shows an edited deadline stopping a running trainer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from kubesft.api import GROUP, SFT_JOB, VERSION
from kubesft.api.job import MUTABLE_AFTER_START, immutable_after_start
from kubesft.operator.kube import Kube
from kubesft.operator.reconcile_job import reconcile_job
from tests.support.cluster_objects import CONFIG, create, make_dataset_ready, sft_job
from tests.support.invalid_manifests import valid_dataset

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

# One changed value per fixed field (a field added to the spec later must get one here).
CHANGES: dict[str, Any] = {
    "model": {"name": "other/model"},
    "dataset": {"name": "other-dataset"},
    "datasets": [{"name": "other-dataset", "weight": 2}],
    "method": {"lora": {"r": 4}},
    "training": {"learningRate": 0.003},
    "evaluation": {"everySteps": 2},
    "checkpoints": {"everySteps": 2},
    "output": {"pvc": {"path": "elsewhere"}},
    "resources": {"memory": "8Gi"},
    "image": "ghcr.io/kubesft/trainer:other",
    "retry": {"maxRestarts": 1},
    "tracking": {"mlflow": {"trackingUri": "http://mlflow.example:5000"}},
}


def _started(kube: Kube, namespace: str, name: str, **spec: Any) -> None:
    """An SFTJob whose trainer Job the operator created (startTime set)."""
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(kube, namespace, sft_job(namespace, name, **spec))
    reconcile_job(kube, CONFIG, namespace, name)
    obj = kube.get_custom(SFT_JOB.plural, namespace, name)
    assert obj is not None and obj["status"]["startTime"], obj


def _patch(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    body = json.dumps({"spec": spec})
    return kubectl("patch", "-n", namespace, f"sftj/{name}", "--type=merge", "-p", body)


def test_every_fixed_field_has_a_change_here() -> None:
    assert set(immutable_after_start()) == set(CHANGES)
    assert not set(MUTABLE_AFTER_START) & set(CHANGES)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_started_job_refuses_changes_to_what_its_children_were_built_from(
    field: str, kube: Kube, kubectl: Kubectl, namespace: str
) -> None:
    _started(kube, namespace, "fixed")
    rejected = _patch(kubectl, namespace, "fixed", {field: CHANGES[field]})
    assert rejected.returncode != 0, rejected.stdout
    assert f"spec.{field}: Invalid value" in rejected.stderr, rejected.stderr
    for advice in ("after the job started", "new metadata.name", "new spec.output"):
        assert advice in rejected.stderr, rejected.stderr


def test_deadline_and_ttl_edits_reach_the_trainer_job(
    kube: Kube, kubectl: Kubectl, namespace: str
) -> None:
    _started(kube, namespace, "timed", activeDeadlineSeconds=3600)

    def job_spec() -> Any:
        return kube.batch.read_namespaced_job("timed-train", namespace).spec

    assert job_spec().active_deadline_seconds == 3600
    for edit, expected in (
        ({"activeDeadlineSeconds": 15, "ttlSecondsAfterFinished": 60}, (15, 60)),
        ({"activeDeadlineSeconds": None}, (None, 60)),
    ):
        result = _patch(kubectl, namespace, "timed", edit)
        assert result.returncode == 0, result.stderr
        reconcile_job(kube, CONFIG, namespace, "timed")
        spec = job_spec()
        assert (spec.active_deadline_seconds, spec.ttl_seconds_after_finished) == expected


def test_finished_job_refuses_deadline_and_ttl_edits(
    kube: Kube, kubectl: Kubectl, namespace: str
) -> None:
    _started(kube, namespace, "done")
    kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SFT_JOB.plural, "done",
        {"status": {"phase": "Succeeded", "completionTime": "2026-01-01T00:10:00Z"}},
    )  # fmt: skip
    for field in ("ttlSecondsAfterFinished", "activeDeadlineSeconds"):
        rejected = _patch(kubectl, namespace, "done", {field: 30})
        assert rejected.returncode != 0, rejected.stdout
        assert f"spec.{field}" in rejected.stderr and "after the job finished" in rejected.stderr
