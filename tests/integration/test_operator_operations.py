"""The operator process as operations see it: liveness, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

from kubesft.operator.kube import Kube
from tests.support.cluster_objects import create
from tests.support.invalid_manifests import valid_dataset
from tests.support.operator_process import OperatorProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_liveness_metrics_and_json_logs(
    kube_config: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    metrics_port = _free_port()
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
