"""The full loop: operator → Jobs → kube-controller-manager → pods run by the node runner →
the real `prepare` and `train` → status on the resources.

The node runner stands in for the kubelet and container runtime only (see its docstring);
everything else is the real apiserver, controller manager, operator and trainer.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubesft.api import GROUP, SFT_DATASET, SFT_JOB, VERSION
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import OperatorProcess
from tests.support.tiny_model import build_tiny_model, build_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
TIMEOUT = 240.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and its locally trained tokenizer, as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Cluster:
    """One test namespace: objects in, status out, files on the fake node's volumes."""

    def __init__(self, api: client.ApiClient, runner: NodeRunner, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.runner = runner
        self.ns = namespace

    def apply(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                self.core.create_namespaced_config_map(self.ns, doc)
            elif doc["kind"] == "Secret":
                self.core.create_namespaced_secret(self.ns, doc)
            else:
                plural = SFT_JOB.plural if doc["kind"] == "SFTJob" else SFT_DATASET.plural
                self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, doc)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)
        return dict(obj)

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.get(plural, name).get("status") or {})

    def phase_is(self, plural: str, name: str, *phases: str) -> Callable[[], bool]:
        return lambda: self.status(plural, name).get("phase") in phases

    def jobs(self, selector: str) -> list[Any]:
        return list(self.batch.list_namespaced_job(self.ns, label_selector=selector).items)

    def pvc(self, claim: str) -> Path:
        return self.runner.pvc_path(self.ns, claim)


@pytest.fixture
def cluster(
    kube_api: client.ApiClient,
    node_runner: NodeRunner,
    namespace: str,
    kubectl: Any,
    tiny_model_files: Path,
) -> Cluster:
    crds = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert crds.returncode == 0, crds.stderr
    c = Cluster(kube_api, node_runner, namespace)
    models = c.pvc("kubesft-models") / "tiny-llama"
    models.parent.mkdir(parents=True, exist_ok=True)
    if not models.exists():
        models.symlink_to(tiny_model_files)
    return c


@pytest.fixture
def operator(kube_config: str, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kube_config, namespace, tmp_path / "operator.log")
    op.start()
    op.wait_started()
    yield op
    op.stop()


def quickstart(**job_spec: Any) -> list[dict[str, Any]]:
    docs = [d for p in sorted(QUICKSTART.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    for doc in docs:
        if doc["kind"] == "SFTJob":
            doc["spec"].update(copy.deepcopy(job_spec))
    return docs


def metrics(output: Path) -> list[dict[str, Any]]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_quickstart_trains_to_success_with_status_and_files(
    cluster: Cluster, operator: OperatorProcess, kubectl: Any
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token"},
        "stringData": {"token": canary},
    }
    docs = quickstart()
    job_doc = next(d for d in docs if d["kind"] == "SFTJob")
    job_doc["spec"]["model"]["tokenSecretRef"] = {"name": "hf-token", "key": "token"}
    cluster.apply([secret, *docs])

    wait_for("dataset Ready", cluster.phase_is(SFT_DATASET.plural, "quickstart", "Ready", "Failed"))
    ds = cluster.status(SFT_DATASET.plural, "quickstart")
    assert ds["phase"] == "Ready", ds
    assert ds["stats"]["rows"] == 10 and ds["stats"]["train"] + ds["stats"]["eval"] == 10
    assert len(ds["fingerprint"]) == 64 and ds["location"].startswith("pvc://kubesft-data/")

    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert st["progress"]["percent"] == 100 and st["progress"]["step"] == 20
    evaluated = [c for c in st["checkpoints"] if c.get("evalLoss") is not None]
    assert len(evaluated) >= 2, st["checkpoints"]
    samples = st["evaluation"]["samples"]
    assert samples and all("before" in s and "after" in s for s in samples)
    assert st["metrics"]["trainLoss"] > 0 and st["evaluation"]["evalLoss"] > 0
    assert st["restarts"] == 0 and st["startTime"] and st.get("completionTime"), json.dumps(st)

    output = cluster.pvc("kubesft-outputs") / "quickstart"
    assert (output / "model" / "adapter_model.safetensors").is_file()
    assert (output / "model" / "adapter_config.json").is_file()
    assert (output / "eval.json").is_file() and (output / "loss.png").is_file()

    row = kubectl("get", "sftj", "quickstart", "-n", cluster.ns, "--no-headers")
    fields = row.stdout.split()
    assert fields[1:3] == ["Succeeded", "100"], row.stdout
    assert float(fields[3]) > 0 and float(fields[4]) > 0, row.stdout

    # The token reached the pod only as a secretKeyRef: no status, Event or log line has it.
    everything = json.dumps(cluster.get(SFT_JOB.plural, "quickstart")) + json.dumps(
        cluster.get(SFT_DATASET.plural, "quickstart")
    )
    events = cluster.core.list_namespaced_event(cluster.ns)
    everything += json.dumps([e.to_dict() for e in events.items], default=str)
    assert canary not in everything and canary not in operator.logs()


def test_bad_rows_fail_the_dataset_and_no_trainer_job_is_created(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    docs = quickstart()
    data = docs[0]["data"]["data.jsonl"].splitlines()
    data[1] = (
        '{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
    )
    data[4] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    docs[0]["data"]["data.jsonl"] = "\n".join(data) + "\n"
    cluster.apply(docs)
    wait_for(
        "dataset Failed", cluster.phase_is(SFT_DATASET.plural, "quickstart", "Failed", "Ready")
    )
    ds = cluster.status(SFT_DATASET.plural, "quickstart")
    assert ds["phase"] == "Failed"
    ready = next(c for c in ds["conditions"] if c["type"] == "Ready")
    assert "row 2" in ready["message"] and "row 5" in ready["message"], ready
    assert [e["row"] for e in ds["errors"]] == [2, 5]
    wait_for("job waiting", lambda: cluster.status(SFT_JOB.plural, "quickstart").get("phase"))
    time.sleep(4)  # more than a resync period: still nothing may be created
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "WaitingForDataset"
    assert (
        next(c for c in st["conditions"] if c["type"] == "DatasetReady")["reason"]
        == "DatasetFailed"
    )
    assert cluster.jobs("kubesft.io/job=quickstart") == []
