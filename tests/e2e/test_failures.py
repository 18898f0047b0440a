"""Failures through the real loop: OOM is explained, deadlines and TTL are honoured (a killed
trainer resuming and bad input failing fast: test_phases_events.py)."""

from __future__ import annotations

import json
import time

from kubesft.api import SFT_DATASET, SFT_JOB
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, quickstart, wait_for


def trainer_pods(cluster: Cluster) -> list[str]:
    pods = cluster.core.list_namespaced_pod(cluster.ns, label_selector="kubesft.io/job=quickstart")
    return sorted(p.metadata.name for p in pods.items)


def failed_condition(cluster: Cluster) -> dict[str, str]:
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Failed", json.dumps(st, indent=1)
    return next(c for c in st["conditions"] if c["type"] == "Failed")


def test_oom_killed_trainer_fails_with_advice(
    cluster: Cluster, operator: OperatorProcess, node_runner: NodeRunner
) -> None:
    node_runner.simulate_oom(
        lambda pod: (
            pod["metadata"]["namespace"] == cluster.ns
            and pod["metadata"]["labels"].get("kubesft.io/job") == "quickstart"
        )
    )
    cluster.apply(quickstart(retry={"maxRestarts": 0}))
    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Failed", "Succeeded"))
    failed = failed_condition(cluster)
    assert failed["reason"] == "OOMKilled", failed
    for advice in ("method.type qlora", "training.microBatchSize", "resources.memory"):
        assert advice in failed["message"], failed


def test_ttl_removes_children_but_keeps_the_finished_sftjob(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(quickstart(ttlSecondsAfterFinished=1))
    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed"))
    wait_for("trainer Job removed", lambda: not cluster.jobs("kubesft.io/job=quickstart"))
    wait_for(
        "ConfigMap removed",
        lambda: (
            not [
                c
                for c in cluster.core.list_namespaced_config_map(cluster.ns).items
                if c.metadata.name == "quickstart-train-config"
            ]
        ),
    )
    wait_for("pods removed", lambda: not trainer_pods(cluster))
    time.sleep(4)  # longer than the operator's resync: it must not re-create anything
    assert not cluster.jobs("kubesft.io/job=quickstart")
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded" and st["progress"]["percent"] == 100
    assert cluster.status(SFT_DATASET.plural, "quickstart")["phase"] == "Ready"
