"""An SFTDataset follows its source: the reconciler against the real apiserver (no pods run;
tests/e2e/test_dataset_source.py runs the preparations)."""

from __future__ import annotations

from typing import Any

from kubesft.api import GROUP, SFT_DATASET, VERSION
from kubesft.operator.dataset_source import REFRESH_ANNOTATION
from kubesft.operator.kube import Kube
from kubesft.operator.reconcile_dataset import reconcile_dataset
from kubesft.operator.reconcile_job import reconcile_job
from tests.support.cluster_objects import (
    CONFIG,
    create,
    ensure_dataset_inputs,
    make_dataset_ready,
    sft_job,
)
from tests.support.invalid_manifests import valid_dataset

NAME = "valid-dataset"


def ready_condition(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get_custom(SFT_DATASET.plural, namespace, NAME) or {}
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def prep_jobs(kube: Kube, namespace: str) -> list[str]:
    """Names of the dataset's preparation Jobs not retired (see `retire_superseded_jobs`)."""
    jobs = kube.list_jobs(namespace, f"kubesft.io/dataset={NAME}")
    return sorted(j["metadata"]["name"] for j in jobs if j["spec"].get("ttlSecondsAfterFinished"))


def test_missing_config_map_key_and_claim_are_named_then_prepared_once_there(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, valid_dataset())
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Failed"
    ready = ready_condition(kube, namespace)
    assert ready["reason"] == "SourceNotFound", ready
    assert "ConfigMap 'data' (spec.source.configMap.name) does not exist" in ready["message"]
    assert "PersistentVolumeClaim 'kubesft-data'" in ready["message"]
    assert prep_jobs(kube, namespace) == []  # no pod left waiting on a missing volume

    ensure_dataset_inputs(kube, namespace)
    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"data.jsonl": None}})
    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"other.jsonl": "{}"}})
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Failed"
    message = ready_condition(kube, namespace)["message"]
    assert "ConfigMap 'data' has no key 'data.jsonl' (spec.source.configMap.key)" in message
    assert "other.jsonl" in message

    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"data.jsonl": "{}\n"}})
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"
    assert len(prep_jobs(kube, namespace)) == 1


def test_config_map_edit_prepares_again_and_retires_the_superseded_job(
    kube: Kube, namespace: str
) -> None:
    ensure_dataset_inputs(kube, namespace)
    create(kube, namespace, valid_dataset())
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"
    (first,) = prep_jobs(kube, namespace)
    spec_cm = kube.get("ConfigMap", namespace, first) or {}
    assert [o["kind"] for o in spec_cm["metadata"]["ownerReferences"]] == ["Job"]  # goes with it
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"
    assert prep_jobs(kube, namespace) == [first]  # same content: same preparation

    kube.core.patch_namespaced_config_map("data", namespace, {"metadata": {"labels": {"a": "b"}}})
    reconcile_dataset(kube, CONFIG, namespace, NAME)
    assert prep_jobs(kube, namespace) == [first]  # metadata is not content

    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"data.jsonl": "{}\n{}\n"}})
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"
    (second,) = prep_jobs(kube, namespace)
    assert second != first and second.startswith(f"{NAME}-prep-g1-")
    # KCM may already have deleted it (1 s deadline, then a TTL of 0), its ConfigMap with it.
    retired = kube.get("Job", namespace, first)
    if retired is not None:
        assert retired["spec"]["ttlSecondsAfterFinished"] == 0  # KCM deletes it, and its pods
        assert retired["spec"]["activeDeadlineSeconds"] == 1  # stopped if it still runs
    obj = kube.get_custom(SFT_DATASET.plural, namespace, NAME) or {}
    assert obj["status"]["revision"] == second.removeprefix(f"{NAME}-prep-")
    command = kube.get("Job", namespace, second)["spec"]["template"]["spec"]["containers"][0]
    keep = command["command"][command["command"].index("--keep-generations") + 1]
    assert keep == obj["status"]["revision"]  # the other generations go once it is prepared


def test_refresh_annotation_prepares_a_ready_dataset_again(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Ready"
    assert prep_jobs(kube, namespace) == []

    patch = {"metadata": {"annotations": {REFRESH_ANNOTATION: "2026-11-30"}}}
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SFT_DATASET.plural, NAME, patch
    )
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"
    assert len(prep_jobs(kube, namespace)) == 1


def test_ready_data_outlives_a_deleted_source(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    kube.core.delete_namespaced_config_map("data", namespace)
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Ready"
    assert prep_jobs(kube, namespace) == []


def test_new_preparation_keeps_the_generation_a_started_job_reads(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    old = (kube.get_custom(SFT_DATASET.plural, namespace, NAME) or {})["status"]["revision"]
    create(kube, namespace, sft_job(namespace))
    assert reconcile_job(kube, CONFIG, namespace, "job") == "Queued"  # its trainer reads `old`

    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"data.jsonl": "{}\n"}})
    assert reconcile_dataset(kube, CONFIG, namespace, NAME) == "Validating"

    (job,) = prep_jobs(kube, namespace)
    command = kube.get("Job", namespace, job)["spec"]["template"]["spec"]["containers"][0]
    keep = command["command"][command["command"].index("--keep-generations") + 1].split(",")
    assert sorted(keep) == sorted([old, job.removeprefix(f"{NAME}-prep-")])
