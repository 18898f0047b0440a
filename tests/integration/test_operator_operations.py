"""The operator process as operations see it: liveness, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubesft.api import GROUP, SFT_JOB, VERSION
from kubesft.operator.kube import Kube
from tests.support.cluster_objects import UNSCHEDULABLE, create, make_dataset_ready, sft_job
from tests.support.controlplane import free_port
from tests.support.invalid_manifests import valid_dataset
from tests.support.operator_process import OperatorProcess


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_liveness_metrics_and_json_logs(
    kube_config: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    metrics_port = free_port()
    op = OperatorProcess(
        kube_config,
        namespace,
        tmp_path / "operator.log",
        env={"KUBESFT_METRICS_PORT": str(metrics_port)},
    )
    op.start()
    try:
        op.wait_started()
        create(kube, namespace, valid_dataset())
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and 'kind="SFTDataset"' not in text:
            time.sleep(0.5)
            text = _get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        assert 'kubesft_reconcile_total{kind="SFTDataset",result="ok"}' in text, text[-2000:]
        assert "kubesft_reconcile_duration_seconds_bucket" in text
        # Validating here; Ready/Failed when an e2e node runner shares the control plane.
        assert re.search(r'kubesft_resources\{kind="SFTDataset",phase="\w+"\} 1\.0', text), text
        status, _ = _get(f"http://127.0.0.1:{op.liveness_port}/healthz")
        assert status == 200
    finally:
        op.stop()
    lines = [line for line in op.logs().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r["logger"] == "kubesft.operator" and "SFTDataset" in r["message"] for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_job_that_failed_before_starting_runs_again_once_its_spec_is_fixed(
    kube_config: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Infeasible trained nothing and tells the user what to change: an edit must count."""
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    cpu_only = {**UNSCHEDULABLE, "gpus": 0}
    create(kube, namespace, sft_job(namespace, method={"type": "qlora"}, resources=cpu_only))
    op = OperatorProcess(kube_config, namespace, tmp_path / "operator.log")
    op.start()
    try:
        op.wait_started()
        failed = wait_for_status(kube, namespace, "job", lambda st: st.get("phase") == "Failed")
        reasons = {c["type"]: c["reason"] for c in failed["conditions"]}
        assert reasons["Feasible"] == "Infeasible", failed
        assert kube.get("Job", namespace, "job-train") is None

        fix = {"spec": {"resources": {"gpus": 1}}}
        kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, SFT_JOB.plural, "job", fix
        )

        queued = wait_for_status(kube, namespace, "job", lambda st: st.get("phase") == "Queued")
        assert kube.get("Job", namespace, "job-train") is not None
        assert queued["observedGeneration"] == 2 and "completionTime" not in queued
        conditions = {c["type"]: c["status"] for c in queued["conditions"]}
        assert conditions["Feasible"] == "True" and "Failed" not in conditions, queued
    finally:
        op.stop()


def wait_for_status(
    kube: Kube, namespace: str, name: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        obj = kube.get_custom(SFT_JOB.plural, namespace, name) or {}
        status = dict(obj.get("status") or {})
        if ready(status):
            return status
        assert time.monotonic() < deadline, f"SFTJob {name} status: {status}"
        time.sleep(0.3)
