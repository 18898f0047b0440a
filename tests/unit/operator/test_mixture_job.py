"""An SFTJob over a mixture (spec.datasets) plus a retention set: it waits for every
dataset, naming each that is not Ready, then mounts each one read-only at its own path."""

from __future__ import annotations

from typing import Any

from kubesft.api import SFTJobStatus
from kubesft.operator import build_trainer, trainer_data
from kubesft.operator.config import OperatorConfig
from kubesft.operator.dataset_readiness import names_read
from kubesft.operator.derive_job import JobFacts, derive_job_status
from kubesft.operator.job_plan import plan_job
from kubesft.operator.reconcile_dataset import runtime_dirs
from tests.unit.operator.fixtures import dataset, job, mixture_job, ready

NOW = "2026-01-01T00:01:00Z"
CONFIG = OperatorConfig(trainer_image="trainer:test")
FAILED = {
    "phase": "Failed",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "DatasetInvalid",
            "message": "row 7 messages[0].role: unknown role 'bot'",
        }
    ],
}


def dataset_ready(status: SFTJobStatus) -> tuple[str, str, str]:
    (c,) = [c for c in status.conditions if c.type == "DatasetReady"]
    return c.status, c.reason, c.message


def test_a_failed_and_a_missing_member_are_each_named() -> None:
    found = [ready("chat"), dataset(FAILED, name="code"), ready("held")]
    st = derive_job_status(mixture_job(), JobFacts(found, None), NOW)
    assert st.phase == "WaitingForDataset"
    status, reason, message = dataset_ready(st)
    assert (status, reason) == ("False", "DatasetFailed")
    assert message == (
        "SFTDataset 'code' is Failed: row 7 messages[0].role: unknown role 'bot'; "
        "SFTDataset 'general-text' does not exist in this namespace: create it or fix "
        "spec.datasets"
    )


def test_missing_beats_not_ready_and_the_retention_set_names_its_field() -> None:
    preparing = dataset({"phase": "Validating", "observedGeneration": 1}, name="code")
    found = [ready("chat"), preparing, ready("general-text")]
    _, reason, message = dataset_ready(derive_job_status(mixture_job(), JobFacts(found, None), NOW))
    assert reason == "DatasetNotFound"
    assert message == (
        "SFTDataset 'code' is Validating; SFTDataset 'held' does not exist in this namespace: "
        "create it or fix spec.evaluation.retention.name"
    )


def test_a_stale_member_generation_is_not_ready() -> None:
    stale = dataset({"phase": "Ready", "observedGeneration": 1}, generation=2, name="code")
    found = [ready("chat"), stale, ready("general-text"), ready("held")]
    _, reason, message = dataset_ready(derive_job_status(mixture_job(), JobFacts(found, None), NOW))
    assert (reason, message) == ("DatasetNotReady", "SFTDataset 'code' is Ready")


def test_all_ready_names_them_all_and_the_trainer_is_created() -> None:
    found = [ready(n) for n in ("chat", "code", "general-text", "held")]
    plan = plan_job(mixture_job(), JobFacts(found, None), NOW)
    assert plan.create_trainer and plan.status.phase == "Pending"
    assert dataset_ready(plan.status) == (
        "True",
        "DatasetReady",
        "SFTDatasets 'chat', 'code', 'general-text', 'held' are Ready",
    )


def test_single_dataset_messages_are_unchanged() -> None:
    st = derive_job_status(job(), JobFacts([ready("quickstart")], None), NOW)
    assert dataset_ready(st)[2] == "SFTDataset 'quickstart' is Ready"


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_each_dataset_is_mounted_read_only_at_its_own_path_on_its_claim() -> None:
    sft = mixture_job()
    found = [ready("chat"), ready("code", claim="code-data"), ready("general-text"), ready("held")]
    inputs = trainer_data.trainer_inputs(sft, found, CONFIG)
    pod = pod_spec(build_trainer.build_job(sft, inputs))
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in pod["volumes"]
        if v["name"].startswith("data")
    }
    assert claims == {
        "data": {"claimName": "kubesft-data", "readOnly": True},
        "data-1": {"claimName": "code-data", "readOnly": True},
    }
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"].startswith("data")]
    on = {"code": ("data-1", "code-data")}
    assert mounts == [
        {
            "name": on.get(name, ("data", ""))[0],
            "mountPath": f"/data/{on.get(name, ('', 'kubesft-data'))[1]}/datasets/{name}/g1",
            "readOnly": True,
            "subPath": f"datasets/{name}/g1",
        }
        for name in ("chat", "code", "general-text", "held")
    ]
    runtime = build_trainer.trainer_config(sft, inputs).runtime
    dirs = {m["mountPath"] for m in mounts}
    assert [(d.name, d.weight, d.fingerprint) for d in runtime.datasets] == [
        ("chat", 0.6, "fp-chat"),
        ("code", 0.35, "fp-code"),
        ("general-text", 0.05, "fp-general-text"),
    ]
    assert {d.dir for d in runtime.datasets} < dirs
    assert runtime.retention is not None
    assert (runtime.retention.name, runtime.retention.weight) == ("held", 1.0)
    assert runtime.retention.dir in dirs - {d.dir for d in runtime.datasets}


def test_the_same_path_on_two_claims_gets_two_mount_paths() -> None:
    sft = job(dataset=None, datasets=[{"name": "a"}, {"name": "b"}])
    a = dataset(
        {"phase": "Ready", "observedGeneration": 1, "location": "pvc://one/shared/g1"}, name="a"
    )
    b = dataset(
        {"phase": "Ready", "observedGeneration": 1, "location": "pvc://two/shared/g1"}, name="b"
    )
    runtime = build_trainer.trainer_config(
        sft, trainer_data.trainer_inputs(sft, [a, b], CONFIG)
    ).runtime
    assert [d.dir for d in runtime.datasets] == ["/data/one/shared/g1", "/data/two/shared/g1"]


def test_the_watch_finds_every_dataset_a_raw_job_reads() -> None:
    raw = mixture_job().to_dict()
    assert names_read(raw) == {"chat", "code", "general-text", "held"}
    assert names_read(job().to_dict()) == {"quickstart"}
    assert names_read({"spec": {"datasets": [{"weight": 1}], "evaluation": None}}) == set()


def test_keep_generations_reads_every_member_and_the_retention_set() -> None:
    sft = mixture_job()
    found = [ready(n) for n in ("chat", "code", "general-text", "held")]
    config = build_trainer.trainer_config(sft, trainer_data.trainer_inputs(sft, found, CONFIG))
    runtime = config.runtime.model_dump(by_alias=True, mode="json")
    assert runtime_dirs(runtime, "code") == ["/data/kubesft-data/datasets/code/g1"]
    assert runtime_dirs(runtime, "held") == ["/data/kubesft-data/datasets/held/g1"]
    assert runtime_dirs(runtime, "other") == []
    # written by an operator before mixtures: one datasetDir
    assert runtime_dirs({"datasetDir": "/data/datasets/code/g1"}, "code") == [
        "/data/datasets/code/g1"
    ]
