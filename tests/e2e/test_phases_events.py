"""Phases, Events and the trainer's own reasons through the real loop (node runner).

A watch records every phase the SFTJob passes through, so a phase that goes backwards
for a moment (Running → Queued between the last pod and the Job's Complete) is caught.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kubernetes import watch
from urllib3.exceptions import ProtocolError

from kubesft.api import GROUP, SFT_DATASET, SFT_JOB, VERSION
from tests.support import trainer_faults
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, metrics, quickstart, wait_for

ORDER = {"Pending": 0, "WaitingForDataset": 1, "Queued": 2, "Running": 3, "Succeeded": 4}
ORDER["Failed"] = 4


@contextmanager
def watched_phases(cluster: Cluster, name: str = "quickstart") -> Iterator[list[str]]:
    """Every phase the SFTJob's status shows, in order, while the block runs."""
    phases: list[str] = []
    w = watch.Watch()

    def record() -> None:
        with suppress(ProtocolError):  # the watch ends with the test's namespace
            stream(w, cluster, name, phases)

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    try:
        yield phases
    finally:
        w.stop()


def stream(w: watch.Watch, cluster: Cluster, name: str, phases: list[str]) -> None:
    for event in w.stream(
        cluster.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        cluster.ns,
        SFT_JOB.plural,
        field_selector=f"metadata.name={name}",
        timeout_seconds=600,
    ):
        phase = (event["object"].get("status") or {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)


def events(cluster: Cluster, name: str = "quickstart") -> list[dict[str, Any]]:
    items = cluster.core.list_namespaced_event(
        cluster.ns, field_selector=f"involvedObject.kind=SFTJob,involvedObject.name={name}"
    ).items
    return [{"type": e.type, "reason": e.reason, "message": e.message} for e in items]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def trainer_pods(cluster: Cluster) -> list[str]:
    pods = cluster.core.list_namespaced_pod(cluster.ns, label_selector="kubesft.io/job=quickstart")
    return sorted(p.metadata.name for p in pods.items)


def assert_forward(phases: list[str]) -> None:
    ranks = [ORDER[p] for p in phases]
    assert ranks == sorted(ranks), f"a phase went backwards: {phases}"


def test_a_crash_is_retried_with_a_warning_and_no_phase_goes_backwards(
    cluster: Cluster, operator: OperatorProcess, node_runner: NodeRunner
) -> None:
    output = cluster.pvc("kubesft-outputs") / "quickstart"
    with watched_phases(cluster) as phases:
        # Parks right after checkpoint 10.
        with trainer_faults.in_trainer_pods(node_runner, trainer_faults.SLEEP, "10"):
            cluster.apply(quickstart())
            wait_for("checkpoint 10", lambda: (output / "checkpoints/step-10/COMPLETE").exists())
            (pod,) = wait_for("one trainer pod", lambda: trainer_pods(cluster))
            node_runner.kill(cluster.ns, pod)
            wait_for("a second pod", lambda: len(trainer_pods(cluster)) == 2)
        done = cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed")
        wait_for("job finished", done)
        wait_for("the watch saw the end", lambda: phases and phases[-1] in ("Succeeded", "Failed"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded" and st["restarts"] == 1, json.dumps(st, indent=1)
    assert_forward(phases)
    assert "Running" in phases, phases
    steps = [r["step"] for r in metrics(output) if r["type"] == "train"]
    assert steps == list(range(1, 21)), steps  # continuous: resumed at 11, nothing redone
    assert {c["step"] for c in st["checkpoints"]} == {10, 20}

    seen = events(cluster)
    crashes = [e for e in seen if e["type"] == "Warning"]
    assert [e["reason"] for e in crashes] == ["TrainerRestarted"], seen
    assert "exit code 137" in crashes[0]["message"] and pod in crashes[0]["message"], seen
    for event in seen:  # each message explains its reason, never repeats it
        assert event["message"] and event["message"] != event["reason"], seen
        assert "restarting after a failure" not in event["message"], seen

    # What was trained: the prepared data, the resolved config and the image, on the SFTJob.
    fingerprint = st["fingerprint"]
    dataset = cluster.status(SFT_DATASET.plural, "quickstart")
    assert fingerprint["dataset"] == dataset["fingerprint"], fingerprint
    assert len(fingerprint["config"]) == 64, fingerprint
    (job,) = cluster.jobs("kubesft.io/job=quickstart")
    assert fingerprint["image"] == job.spec.template.spec.containers[0].image, fingerprint
    assert condition(st, "Complete")["reason"] == "Completed"


def test_early_stopping_reaches_the_sftjob_as_the_trainers_reason(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    # No eval after the first can beat the best by 100: the second one stops the run.
    stopping = {"maxSteps": 20, "earlyStopping": {"patience": 1, "minDelta": 100.0}}
    docs = quickstart(evaluation={"everySteps": 5, "samples": 1, "maxNewTokens": 4})
    job = next(d for d in docs if d["kind"] == "SFTJob")
    job["spec"]["training"].update(stopping)
    with watched_phases(cluster) as phases:
        cluster.apply(docs)
        done = cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed")
        wait_for("job finished", done)
        wait_for("the watch saw the end", lambda: phases and phases[-1] in ("Succeeded", "Failed"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    complete = condition(st, "Complete")
    assert complete["reason"] == "EarlyStopped", json.dumps(st, indent=1)
    assert st["progress"]["step"] == 10 and "trained 10 steps" in complete["message"], complete
    assert_forward(phases)
    assert st["fingerprint"]["dataset"] and st["fingerprint"]["config"], st["fingerprint"]
    succeeded = [e for e in events(cluster) if e["reason"] == "Succeeded"]
    assert [e["message"] for e in succeeded] == [complete["message"]]


def test_invalid_input_fails_with_the_trainers_reason_and_no_restart(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    missing = {
        "name": "tiny-llama",
        "source": "pvc",
        "chatTemplate": "chatml",
        "pvc": {"claimName": "kubesft-models", "path": "no-such-model"},
    }
    cluster.apply(quickstart(model=missing, retry={"maxRestarts": 3}))
    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Failed", "Succeeded"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    failed = condition(st, "Failed")
    assert failed["reason"] == "InvalidInput" and "no-such-model" in failed["message"], failed
    assert st["restarts"] == 0, json.dumps(st, indent=1)  # exit 2 is not retried
    dataset = cluster.status(SFT_DATASET.plural, "quickstart")
    assert st["fingerprint"]["dataset"] == dataset["fingerprint"], st["fingerprint"]
    assert len(st["fingerprint"]["config"]) == 64 and st["fingerprint"]["image"], st
    warnings = [e for e in events(cluster) if e["type"] == "Warning"]
    assert warnings == [{"type": "Warning", "reason": "Failed", "message": failed["message"]}]


def test_the_infeasible_event_carries_the_feasible_message(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(quickstart(method={"type": "qlora"}, resources={"gpus": 0}))
    wait_for("job failed", cluster.phase_is(SFT_JOB.plural, "quickstart", "Failed", "Succeeded"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    feasible = condition(st, "Feasible")
    assert (feasible["status"], feasible["reason"]) == ("False", "Infeasible"), feasible
    (failed,) = [e for e in events(cluster) if e["reason"] == "Failed"]
    assert failed == {"type": "Warning", "reason": "Failed", "message": feasible["message"]}
    assert "is Ready" not in failed["message"]
