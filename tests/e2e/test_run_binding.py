"""An output location belongs to one run, through the real loop (operator, Jobs, node runner).

A second SFTJob on the first one's `spec.output` fails fast (OutputInUse, naming the field
and the other run) instead of resuming the first one's checkpoint and "succeeding" with zero
steps; deleting a job and re-creating it with another learning rate and a new output, as the
message says, trains its own steps to its own loss.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubesft.api import GROUP, SFT_JOB, VERSION
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, metrics, quickstart, wait_for

SHORT = {"maxSteps": 6, "learningRate": 0.003, "microBatchSize": 4, "gradientAccumulation": 1,
         "maxSeqLength": 128, "precision": "fp32", "gradientCheckpointing": False}  # fmt: skip
RUN = {
    "training": SHORT,
    "evaluation": {"everySteps": 3, "samples": 1, "maxNewTokens": 4},
    "checkpoints": {"everySteps": 3, "keep": 2},
}


def sft_job(docs: list[dict[str, Any]], name: str, **spec: Any) -> dict[str, Any]:
    job = copy.deepcopy(next(d for d in docs if d["kind"] == "SFTJob"))
    job["metadata"] = {"name": name}
    for key, value in spec.items():
        job["spec"][key] = {**job["spec"].get(key, {}), **value}
    return job


def finished(cluster: Cluster, name: str) -> dict[str, Any]:
    wait_for(f"{name} finished", cluster.phase_is(SFT_JOB.plural, name, "Succeeded", "Failed"))
    return cluster.status(SFT_JOB.plural, name)


def job_names(cluster: Cluster) -> set[str]:
    found = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.ns, SFT_JOB.plural)
    return {item["metadata"]["name"] for item in found["items"]}


def train_losses(output: Any) -> list[tuple[int, float]]:
    return [(r["step"], r["trainLoss"]) for r in metrics(output) if r["type"] == "train"]


def test_second_job_on_an_output_fails_fast_and_a_new_output_trains(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    docs = quickstart(**RUN)
    cluster.apply(docs)
    first = finished(cluster, "quickstart")
    assert first["phase"] == "Succeeded", json.dumps(first, indent=1)
    output = cluster.pvc("kubesft-outputs") / "quickstart"
    first_losses = train_losses(output)
    assert [step for step, _ in first_losses] == list(range(1, 7))

    # (a) Same output, another object: refused, naming spec.output and the first run.
    cluster.apply([sft_job(docs, "quickstart-copy")])
    second = finished(cluster, "quickstart-copy")
    assert second["phase"] == "Failed", json.dumps(second, indent=1)
    failed = next(c for c in second["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "OutputInUse", failed
    expected = (
        "spec.output.pvc pvc://kubesft-outputs/quickstart",
        f"SFTJob {cluster.ns}/quickstart",
    )
    assert all(part in failed["message"] for part in expected), failed
    assert not second.get("progress", {}).get("step"), second
    pods = cluster.core.list_namespaced_pod(
        cluster.ns, label_selector="kubesft.io/job=quickstart-copy"
    )
    assert len(pods.items) == 1  # a user error: not retried
    assert train_losses(output) == first_losses  # the first run's output untouched

    # (b) Delete and re-create with another learning rate: the old output is refused too...
    cluster.custom.delete_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, SFT_JOB.plural, "quickstart"
    )
    wait_for("quickstart deleted", lambda: "quickstart" not in job_names(cluster))
    changed = {"learningRate": 0.01}
    cluster.apply([sft_job(docs, "quickstart", training=changed)])
    again = finished(cluster, "quickstart")
    assert again["phase"] == "Failed", json.dumps(again, indent=1)
    refused = next(c for c in again["conditions"] if c["type"] == "Failed")
    assert refused["reason"] == "OutputInUse" and "already holds" in refused["message"], refused

    # ...and with its own output, as the message says, it trains its own steps.
    own = {"pvc": {"claimName": "kubesft-outputs", "path": "quickstart-lr"}}
    cluster.apply([sft_job(docs, "quickstart-lr", training=changed, output=own)])
    retrained = finished(cluster, "quickstart-lr")
    assert retrained["phase"] == "Succeeded", json.dumps(retrained, indent=1)
    assert retrained["progress"]["step"] == 6
    new_losses = train_losses(cluster.pvc("kubesft-outputs") / "quickstart-lr")
    assert [step for step, _ in new_losses] == list(range(1, 7))
    assert new_losses[-1][1] != first_losses[-1][1]  # its own loss, not the first run's
    peak = [max(r["learningRate"] for r in metrics(out) if r["type"] == "train")
            for out in (output, cluster.pvc("kubesft-outputs") / "quickstart-lr")]  # fmt: skip
    assert peak[1] > peak[0]  # trained with 0.01, not with the first run's 0.003
