"""An SFTJob over a mixture (spec.datasets) plus a retention set, against the real
apiserver: it waits for every member, naming the one that Failed; a member turning Ready
wakes it; its trainer Job mounts each dataset; new preparations keep what it reads.

No pods run here (tests/e2e/test_mixture.py trains one); preparations are stood in for by
the datasets' status.
"""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import SFT_DATASET, SFT_JOB
from kubesft.operator.kube import Kube
from kubesft.operator.reconcile_dataset import reconcile_dataset
from kubesft.operator.reconcile_job import reconcile_job
from kubesft.operator.reconciler import Reconciler
from tests.support.cluster_objects import CONFIG, create, make_dataset_ready, sft_job
from tests.support.invalid_manifests import valid_dataset

MEMBERS = [{"name": "chat", "weight": 0.7}, {"name": "code", "weight": 0.3}]
INVALID_ROWS = "row 3 messages[1].role: unknown role 'bot'"


def mixture_job(namespace: str) -> dict[str, Any]:
    obj = sft_job(namespace, "mix", datasets=MEMBERS, evaluation={"retention": {"name": "held"}})
    del obj["spec"]["dataset"]
    return obj


def fail(kube: Kube, namespace: str, name: str) -> None:
    """Stand in for a preparation that found invalid rows."""
    condition = {"type": "Ready", "status": "False", "reason": "DatasetInvalid",
                 "message": INVALID_ROWS, "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    status = {"phase": "Failed", "observedGeneration": 1, "conditions": [condition]}
    kube.patch_status(SFT_DATASET.plural, namespace, name, status)


def dataset_ready(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get_custom(SFT_JOB.plural, namespace, "mix") or {}
    return next(c for c in obj["status"]["conditions"] if c["type"] == "DatasetReady")


class Recording(Reconciler):
    """The operator's reconciler, recording what it would queue instead of running it."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube, CONFIG)
        self.asked: list[tuple[str, str, str]] = []

    def enqueue(self, kind: str, namespace: str, name: str) -> None:
        self.asked.append((kind, namespace, name))


def test_a_mixture_waits_naming_the_failed_member_then_mounts_every_dataset(
    kube: Kube, namespace: str
) -> None:
    for name in ("chat", "code", "held"):
        create(kube, namespace, valid_dataset(name))
    make_dataset_ready(kube, namespace, "chat")
    fail(kube, namespace, "code")
    create(kube, namespace, mixture_job(namespace))

    assert reconcile_job(kube, CONFIG, namespace, "mix") == "WaitingForDataset"
    condition = dataset_ready(kube, namespace)
    assert condition["reason"] == "DatasetFailed"
    assert condition["message"] == f"SFTDataset 'code' is Failed: {INVALID_ROWS}; " + (
        "SFTDataset 'held' is Pending"
    )
    assert kube.get("Job", namespace, "mix-train") is None

    # The member fixed and the retention set prepared: each wakes the waiting job.
    reconciler = Recording(kube)
    for name in ("code", "held"):
        make_dataset_ready(kube, namespace, name)
        assert reconciler.dataset(namespace, name) == "Ready"
        assert ("SFTJob", namespace, "mix") in reconciler.asked, name
        reconciler.asked.clear()

    assert reconcile_job(kube, CONFIG, namespace, "mix") == "Queued"
    assert dataset_ready(kube, namespace)["message"] == (
        "SFTDatasets 'chat', 'code', 'held' are Ready"
    )
    cm = kube.core.read_namespaced_config_map("mix-train-config", namespace)
    runtime = json.loads(cm.data["config.json"])["runtime"]
    locations = {
        name: (kube.get_custom(SFT_DATASET.plural, namespace, name) or {})["status"]["location"]
        for name in ("chat", "code", "held")
    }
    dirs = {name: "/data/" + loc.removeprefix("pvc://") for name, loc in locations.items()}
    assert runtime["datasets"] == [
        {"name": "chat", "dir": dirs["chat"], "weight": 0.7, "fingerprint": "f" * 64},
        {"name": "code", "dir": dirs["code"], "weight": 0.3, "fingerprint": "f" * 64},
    ]
    assert runtime["retention"] == {
        "name": "held", "dir": dirs["held"], "weight": 1.0, "fingerprint": "f" * 64
    }  # fmt: skip
    pod = kube.batch.read_namespaced_job("mix-train", namespace).spec.template.spec
    mounts = {m.mount_path: m for m in pod.containers[0].volume_mounts}
    for name, loc in locations.items():
        mount = mounts[dirs[name]]
        assert mount.read_only and mount.sub_path == loc.split("/", 3)[3], name

    # A new preparation of a member or of the retention set keeps what the trainer reads.
    old = {name: dirs[name].rsplit("/", 1)[1] for name in ("code", "held")}
    kube.core.patch_namespaced_config_map("data", namespace, {"data": {"data.jsonl": "{}\n"}})
    for name in ("code", "held"):
        assert reconcile_dataset(kube, CONFIG, namespace, name) == "Validating"
        (prep,) = kube.list_jobs(namespace, f"kubesft.io/dataset={name}")
        command = prep["spec"]["template"]["spec"]["containers"][0]["command"]
        keep = command[command.index("--keep-generations") + 1].split(",")
        assert old[name] in keep, (name, keep)
