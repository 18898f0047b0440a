"""The operator's reconcilers against the real apiserver (no pods run here; see tests/e2e)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesft.api import GROUP, SFT_JOB, VERSION
from kubesft.operator.kube import Kube
from kubesft.operator.reconcile_dataset import reconcile_dataset
from kubesft.operator.reconcile_job import reconcile_job
from tests.support.cluster_objects import (
    CONFIG,
    UNSCHEDULABLE,
    create,
    ensure_dataset_inputs,
    make_dataset_ready,
    sft_job,
)
from tests.support.invalid_manifests import valid_dataset


def status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get_custom(SFT_JOB.plural, namespace, name)
    assert obj is not None
    return dict(obj.get("status") or {})


def conditions(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st.get("conditions", [])}


def test_dataset_gets_a_prepare_job_once(kube: Kube, namespace: str) -> None:
    ensure_dataset_inputs(kube, namespace)
    create(kube, namespace, valid_dataset())
    assert reconcile_dataset(kube, CONFIG, namespace, "valid-dataset") == "Validating"
    assert reconcile_dataset(kube, CONFIG, namespace, "valid-dataset") == "Validating"
    jobs = kube.batch.list_namespaced_job(
        namespace, label_selector="kubesft.io/dataset=valid-dataset"
    )
    (name,) = [j.metadata.name for j in jobs.items]
    assert name.startswith("valid-dataset-prep-g1-")  # + a digest of the ConfigMap's data
    container = jobs.items[0].spec.template.spec.containers[0]
    assert container.command[:4] == ["python", "-m", "kubesft_trainer", "prepare"]
    assert "--source-path" in container.command and container.image == "kubesft/trainer:test"


def test_job_waits_for_dataset_then_creates_its_children(kube: Kube, namespace: str) -> None:
    create(kube, namespace, sft_job(namespace))
    assert reconcile_job(kube, CONFIG, namespace, "job") == "WaitingForDataset"
    reason = conditions(status(kube, namespace, "job"))["DatasetReady"]["reason"]
    assert reason == "DatasetNotFound"
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    assert reconcile_job(kube, CONFIG, namespace, "job") == "Queued"
    assert reconcile_job(kube, CONFIG, namespace, "job") == "Queued"  # idempotent
    jobs = kube.batch.list_namespaced_job(namespace, label_selector="kubesft.io/job=job")
    assert [j.metadata.name for j in jobs.items] == ["job-train"]
    cm = kube.core.read_namespaced_config_map("job-train-config", namespace)
    assert cm.metadata.owner_references[0].kind == "Job"  # TTL of the Job removes it too
    config = json.loads(cm.data["config.json"])
    location = kube.get_custom("sftdatasets", namespace, "valid-dataset")["status"]["location"]
    folder = location.removeprefix("pvc://kubesft-data/")
    (data,) = config["runtime"]["datasets"]
    assert data == {
        "name": "valid-dataset",
        "dir": f"/data/kubesft-data/{folder}",
        "weight": 1.0,
        "fingerprint": "f" * 64,
    }
    assert folder.startswith("datasets/valid-dataset/g1-")
    st = status(kube, namespace, "job")
    assert st["startTime"] and conditions(st)["Feasible"]["status"] == "True"


def test_two_node_job_renders_indexed_job_and_headless_service(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(
        kube,
        namespace,
        sft_job(namespace, "multi", resources={**UNSCHEDULABLE, "nodes": 2, "gpus": 4}),
    )
    reconcile_job(kube, CONFIG, namespace, "multi")
    job = kube.batch.read_namespaced_job("multi-train", namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    pod = job.spec.template.spec
    assert pod.subdomain == "multi-train"
    env = {e.name: e for e in pod.containers[0].env}
    assert env["KUBESFT_NUM_MACHINES"].value == "2" and env["KUBESFT_WORLD_SIZE"].value == "8"
    assert env["KUBESFT_MAIN_ADDRESS"].value == f"multi-train-0.multi-train.{namespace}.svc"
    rank = env["KUBESFT_MACHINE_RANK"].value_from.field_ref.field_path
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    svc = kube.core.read_namespaced_service("multi-train", namespace)
    assert svc.spec.cluster_ip == "None" and svc.spec.selector == {"kubesft.io/job": "multi"}


def test_suspend_and_unsuspend_drive_the_job(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(kube, namespace, sft_job(namespace, "pausable", suspend=True))
    assert reconcile_job(kube, CONFIG, namespace, "pausable") == "Suspended"
    assert kube.batch.read_namespaced_job("pausable-train", namespace).spec.suspend is True
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SFT_JOB.plural, "pausable", {"spec": {"suspend": False}}
    )
    assert reconcile_job(kube, CONFIG, namespace, "pausable") == "Queued"
    assert kube.batch.read_namespaced_job("pausable-train", namespace).spec.suspend is False
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SFT_JOB.plural, "pausable", {"spec": {"suspend": True}}
    )
    assert reconcile_job(kube, CONFIG, namespace, "pausable") == "Suspended"
    assert kube.batch.read_namespaced_job("pausable-train", namespace).spec.suspend is True


def test_kueue_label_passes_through_and_kueue_admits(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    obj = sft_job(namespace, "queued")
    obj["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
    create(kube, namespace, obj)
    assert reconcile_job(kube, CONFIG, namespace, "queued") == "Queued"
    job = kube.batch.read_namespaced_job("queued-train", namespace)
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.spec.suspend is True
    reason = conditions(status(kube, namespace, "queued"))["Admitted"]["reason"]
    assert reason == "WaitingForQueue"
    kube.patch_job(namespace, "queued-train", {"spec": {"suspend": False}})  # Kueue admits
    reconcile_job(kube, CONFIG, namespace, "queued")
    assert kube.batch.read_namespaced_job("queued-train", namespace).spec.suspend is False
    assert conditions(status(kube, namespace, "queued"))["Admitted"]["status"] == "True"


def test_infeasible_job_fails_before_any_trainer_job(kube: Kube, namespace: str) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(
        kube,
        namespace,
        sft_job(
            namespace, "cpu-qlora", method={"type": "qlora"}, resources={**UNSCHEDULABLE, "gpus": 0}
        ),
    )
    assert reconcile_job(kube, CONFIG, namespace, "cpu-qlora") == "Failed"
    st = status(kube, namespace, "cpu-qlora")
    assert "resources.gpus" in conditions(st)["Feasible"]["message"]
    assert kube.get("Job", namespace, "cpu-qlora-train") is None
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=cpu-qlora"
    )
    assert any(e.reason == "Failed" and e.type == "Warning" for e in events.items)


def _token_for(kube: Kube, namespace: str, account: str) -> str:
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    res = kube.core.create_namespaced_service_account_token(account, namespace, request)
    token: str = res.status.token
    return token


def test_trainer_credentials_reach_only_their_own_job(
    kube: Kube, kube_api: client.ApiClient, namespace: str, controller_manager: None
) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    for name in ("alpha", "beta"):
        create(kube, namespace, sft_job(namespace, name))
        reconcile_job(kube, CONFIG, namespace, name)
    cfg = client.Configuration()
    cfg.host = kube_api.configuration.host
    cfg.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": "Bearer " + _token_for(kube, namespace, "alpha-trainer")}
    as_alpha = client.CustomObjectsApi(client.ApiClient(cfg))
    patch: Callable[[str], Any] = lambda name: as_alpha.patch_namespaced_custom_object_status(  # noqa: E731
        GROUP, VERSION, namespace, SFT_JOB.plural, name, {"status": {"progress": {"step": 1}}}
    )
    patch("alpha")
    with pytest.raises(ApiException) as denied:
        patch("beta")
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied_spec:
        as_alpha.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, SFT_JOB.plural, "alpha", {"spec": {"suspend": True}}
        )
    assert denied_spec.value.status == 403
    with pytest.raises(ApiException) as denied_secret:
        client.CoreV1Api(as_alpha.api_client).list_namespaced_secret(namespace)
    assert denied_secret.value.status == 403
