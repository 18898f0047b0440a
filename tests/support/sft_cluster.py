"""Driving a namespace of the real loop from tests: apply objects, wait for status, read files."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubesft.api import GROUP, SFT_DATASET, SFT_JOB, VERSION
from tests.support.node_runner import NodeRunner

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
TIMEOUT = 240.0
CLAIMS = ("kubesft-data", "kubesft-models", "kubesft-outputs")
"""PersistentVolumeClaims the quickstart names (the operator checks that the data claim exists)."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


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

    def create_claim(self, claim: str) -> None:
        """A PersistentVolumeClaim object (no provisioner binds it; the runner needs none)."""
        spec = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
        body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim}, "spec": spec}  # fmt: skip
        self.core.create_namespaced_persistent_volume_claim(self.ns, body)

    def pvc(self, claim: str) -> Path:
        return self.runner.pvc_path(self.ns, claim)


# A short LoRA run (20 steps, evaluation and a checkpoint every 10): long enough for every
# status field and restart point, short enough for the test suite.
E2E_JOB: dict[str, Any] = {
    "method": {"type": "lora", "lora": {"r": 8, "alpha": 16}},
    "training": {
        "maxSteps": 20, "learningRate": 0.003, "microBatchSize": 4, "gradientAccumulation": 1,
        "maxSeqLength": 128, "precision": "fp32", "gradientCheckpointing": False,
    },
    "evaluation": {"everySteps": 10, "samples": 2, "maxNewTokens": 8},
    "checkpoints": {"everySteps": 10, "keep": 2},
}  # fmt: skip


def quickstart(**job_spec: Any) -> list[dict[str, Any]]:
    """examples/quickstart/ (ConfigMap, SFTDataset, SFTJob) with the e2e job settings."""
    docs = [d for p in sorted(QUICKSTART.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    for doc in docs:
        if doc["kind"] == "SFTJob":
            doc["spec"].update(copy.deepcopy({**E2E_JOB, **job_spec}))
    return docs


def metrics(output: Path) -> list[dict[str, Any]]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
