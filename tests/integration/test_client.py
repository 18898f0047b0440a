"""kubesft.client against the real apiserver, with the operator running as a process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubesft.api import InvalidSpec, SFTDataset, SFTDatasetSpec, SFTJob
from kubesft.client import JobFailed, NotFound, SFTClient
from kubesft.operator.kube import Kube
from tests.support.cluster_objects import ensure_dataset_inputs, make_dataset_ready, sft_job
from tests.support.invalid_manifests import valid_dataset
from tests.support.operator_process import OperatorProcess


@pytest.fixture
def sft(kube_config: str, namespace: str, crds_installed: None) -> SFTClient:
    return SFTClient(namespace, kubeconfig=kube_config)


def test_client_creates_both_resources_and_follows_their_status(
    sft: SFTClient, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    ensure_dataset_inputs(kube, namespace)  # its source ConfigMap and the data claim
    dataset_doc = valid_dataset()
    dataset = SFTDataset(
        metadata={"name": "valid-dataset"},  # type: ignore[arg-type]
        spec=SFTDatasetSpec.model_validate(dataset_doc["spec"]),
    )
    created = sft.create(dataset)
    assert isinstance(created, SFTDataset) and created.metadata.uid
    job_yaml = yaml.safe_dump(sft_job(namespace, "from-yaml"))
    (job,) = sft.apply_yaml(job_yaml)
    assert isinstance(job, SFTJob) and job.metadata.namespace == namespace

    phases: list[str] = []
    waiting = sft.wait_for_job(
        "from-yaml",
        until={"WaitingForDataset"},
        timeout=60,
        interval=0.5,
        on_update=lambda j: phases.append(j.status.phase if j.status else "-"),
    )
    assert waiting.status is not None and phases[-1] == "WaitingForDataset"
    dataset_ready = {c.type: c for c in waiting.status.conditions}["DatasetReady"]
    assert dataset_ready.status == "False"

    # The operator started preparing it; then stand in for the prepare pod (tests/e2e runs it).
    sft.wait_for_dataset("valid-dataset", until={"Validating"}, timeout=60, interval=0.5)
    make_dataset_ready(kube, namespace)
    assert sft.wait_for_dataset("valid-dataset", timeout=30).status.phase == "Ready"  # type: ignore[union-attr]
    queued = sft.wait_for_job("from-yaml", until={"Queued"}, timeout=60, interval=0.5)
    conditions = {c.type: c.status for c in queued.status.conditions}  # type: ignore[union-attr]
    assert conditions["DatasetReady"] == "True" and conditions["Feasible"] == "True"
    assert [j.metadata.name for j in sft.list_jobs()] == ["from-yaml"]
    assert sft.samples("from-yaml") == [] and sft.output("from-yaml") is None
    assert sft.metrics_history("from-yaml").train_loss == []


def test_apply_updates_in_place_and_keeps_status(
    sft: SFTClient, kube: Kube, namespace: str
) -> None:
    first = sft.apply(valid_dataset())
    make_dataset_ready(kube, namespace)
    changed = valid_dataset()
    changed["spec"]["split"]["seed"] = 4
    second = sft.apply(changed)
    assert second.metadata.uid == first.metadata.uid
    assert second.metadata.generation == 2 and second.spec.split.seed == 4
    assert second.status is not None and second.status.phase == "Ready"


def test_bad_objects_fail_before_the_apiserver_with_the_field_named(
    sft: SFTClient, tmp_path: Path
) -> None:
    bad = sft_job("x", "bad")
    bad["spec"]["method"]["lora"]["r"] = 0
    with pytest.raises(InvalidSpec, match=r"spec\.method\.lora\.r"):
        sft.create(bad)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(InvalidSpec, match=r"job\.yaml document 1: spec\.method\.lora\.r"):
        sft.apply_yaml(tmp_path)
    with pytest.raises(NotFound, match=r"SFTJob .*/missing not found"):
        sft.get_job("missing")


def test_wait_raises_with_the_failure_reason_and_times_out_naming_the_phase(
    sft: SFTClient, kube: Kube, namespace: str
) -> None:
    sft.create(sft_job(namespace, "doomed"))
    with pytest.raises(TimeoutError, match=r"doomed still without status after 0\.5s"):
        sft.wait_for_job("doomed", timeout=0.5, interval=0.1)
    failed = {
        "phase": "Failed",
        "conditions": [{"type": "Failed", "status": "True", "reason": "OOMKilled",
                        "message": "lower training.microBatchSize"}],
    }  # fmt: skip
    kube.patch_status("sftjobs", namespace, "doomed", failed)
    with pytest.raises(JobFailed, match=r"OOMKilled: lower training\.microBatchSize"):
        sft.wait_for_job("doomed", timeout=10, progress=True)


def test_apply_yaml_applies_the_quickstart_folder_with_its_configmap(
    sft: SFTClient, kube: Kube, namespace: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    applied = sft.apply_yaml(root / "examples" / "quickstart")
    again = sft.apply_yaml(root / "examples" / "quickstart")  # idempotent
    assert len(applied) == len(again) == 3
    config_map = kube.core.read_namespaced_config_map("quickstart-data", namespace)
    assert "train.jsonl" in config_map.data
    assert sft.get_dataset("quickstart").metadata.generation == 1
