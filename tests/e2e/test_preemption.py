"""Runs that survive, through the operator: a SIGTERMed trainer pod checkpoints and the Job's
next pod resumes; a hung trainer is ended by its watchdog with the reason on the SFTJob."""

from __future__ import annotations

import copy
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from kubesft.api import SFT_JOB
from kubesft.api.report import ExitCode
from tests.support import trainer_faults
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, metrics, quickstart, wait_for


def trainer_pods(cluster: Cluster, job: str = "quickstart") -> list[Any]:
    pods = cluster.core.list_namespaced_pod(cluster.ns, label_selector=f"kubesft.io/job={job}")
    return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)


def train_steps(cluster: Cluster, job: str) -> list[int]:
    path = cluster.pvc("kubesft-outputs") / job / "metrics.jsonl"
    if not path.exists():
        return []
    return [r["step"] for r in metrics(path.parent) if r["type"] == "train"]


def renamed(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The quickstart SFTJob as `name`, writing to its own output path."""
    job = copy.deepcopy(next(d for d in docs if d["kind"] == "SFTJob"))
    job["metadata"]["name"] = name
    job["spec"]["output"]["pvc"]["path"] = name
    return job


@pytest.fixture
def faults(node_runner: NodeRunner) -> Iterator[NodeRunner]:
    """Trainer pods started while this fixture lives load the test-only fault injection."""
    node_runner.set_image_env("PYTHONPATH", str(trainer_faults.FOLDER))
    try:
        yield node_runner
    finally:
        for name in ("PYTHONPATH", trainer_faults.SLOW, trainer_faults.STALL):
            node_runner.set_image_env(name, None)


def test_sigterm_checkpoints_and_the_next_pod_resumes_to_a_straight_runs_weights(
    cluster: Cluster, operator: OperatorProcess, faults: NodeRunner
) -> None:
    docs = quickstart()
    faults.set_image_env(trainer_faults.SLOW, "0.3")
    cluster.apply(docs)
    wait_for("step 3", lambda: len(train_steps(cluster, "quickstart")) >= 3)
    (first,) = trainer_pods(cluster)
    faults.kill(cluster.ns, first.metadata.name, signal.SIGTERM)
    wait_for("a second pod", lambda: len(trainer_pods(cluster)) == 2)
    faults.set_image_env(trainer_faults.SLOW, None)
    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed"))

    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded" and st["restarts"] == 1, json.dumps(st, indent=1)
    preempted = cluster.core.read_namespaced_pod(first.metadata.name, cluster.ns)
    terminated = preempted.status.container_statuses[0].state.terminated
    assert terminated.exit_code == ExitCode.PREEMPTED
    message = json.loads(terminated.message)
    stopped_at = message["progress"]["step"]
    assert message["reason"] == "Preempted" and message["checkpoints"][-1]["step"] == stopped_at
    assert train_steps(cluster, "quickstart") == list(range(1, 21))  # none twice, none lost

    cluster.apply([renamed(docs, "straight")])
    wait_for("straight run", cluster.phase_is(SFT_JOB.plural, "straight", "Succeeded", "Failed"))
    outputs = cluster.pvc("kubesft-outputs")
    expected = load_file(outputs / "straight" / "model" / "adapter_model.safetensors")
    actual = load_file(outputs / "quickstart" / "model" / "adapter_model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_a_hung_trainer_is_ended_by_its_watchdog_with_the_reason_on_the_sftjob(
    cluster: Cluster, operator: OperatorProcess, faults: NodeRunner
) -> None:
    faults.set_image_env(trainer_faults.STALL, "2")
    training = {**renamed(quickstart(), "any")["spec"]["training"], "hangTimeoutSeconds": 8}
    cluster.apply(quickstart(training=training, retry={"maxRestarts": 0}))
    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Failed", "Succeeded"))

    st = cluster.status(SFT_JOB.plural, "quickstart")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "Hung", json.dumps(st, indent=1)
    assert "after step 2" in failed["message"] and "hangTimeoutSeconds" in failed["message"]
    assert train_steps(cluster, "quickstart") == [1, 2]
