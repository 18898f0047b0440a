"""plan_job: phase, conditions and Events of an SFTJob from what was observed (pure).

Multi-node mixes pin that only the trainer Job's own Complete/Failed conditions end a
run: a succeeded pod says nothing about its sibling or about what the Job will do.
"""

from __future__ import annotations

from typing import Any

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.operator.derive_job import JobFacts
from kubesft.operator.job_plan import Event, JobPlan, plan_job
from kubesft.operator.observe import observe_job
from tests.unit.operator.fixtures import READY, dataset, ended, job, observed

NOW = "2026-01-01T00:01:00Z"
CRASH = ended(1, "Error", "Traceback ...\nRuntimeError: CUDA error: an illegal memory access")


def two_nodes() -> SFTJob:
    return job(resources={"nodes": 2, "gpus": 1})


def step(sft: SFTJob, trainer: Any, now: str = NOW) -> JobPlan:
    """Plan against `trainer` (None: not created yet), then carry the status forward."""
    plan = plan_job(sft, JobFacts([dataset(READY)], trainer), now)
    sft.status = plan.status
    return plan


def running(sft: SFTJob) -> SFTJob:
    sft.status = SFTJobStatus(phase="Running", start_time="t0")
    return sft


def condition(status: SFTJobStatus, type_: str) -> tuple[str, str, str]:
    (c,) = [c for c in status.conditions if c.type == type_]
    return c.status, c.reason, c.message


def test_one_pod_done_and_one_running_stays_running() -> None:
    mix = observed(succeeded=1, running_pods=1, terminations=(ended(0, "Completed"),))
    plan = step(running(two_nodes()), mix)
    assert plan.status.phase == "Running"
    assert condition(plan.status, "Running")[:2] == ("True", "TrainerRunning")
    assert plan.status.completion_time is None and plan.events == ()


def test_every_pod_done_but_the_job_not_yet_complete_is_finishing_not_queued() -> None:
    done = observed(succeeded=2, terminations=(ended(0, "Completed", pod="p0"), ended(0, "")))
    for before in ("Running", "Queued"):  # the pods may finish before a reconcile saw them
        sft = two_nodes()
        sft.status = SFTJobStatus(phase=before, start_time="t0")
        plan = step(sft, done)
        assert plan.status.phase == "Running"
        assert condition(plan.status, "Running")[1] == "Finishing"


def test_a_failed_job_with_a_succeeded_pod_is_failed() -> None:
    failed = observed(
        succeeded=1,
        failed=1,
        conditions={"Failed": ("True", "BackoffLimitExceeded", "Job has reached the limit")},
        terminations=(ended(0, "Completed", pod="p0"), CRASH),
    )
    plan = step(running(two_nodes()), failed)
    assert plan.status.phase == "Failed"
    _, reason, message = condition(plan.status, "Failed")
    assert reason == "TrainerFailed" and "RuntimeError: CUDA error" in message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "Failed")]
    assert plan.events[0].message == message


def pod(index: int, phase: str, created: str, exit_code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        terminated = {"exitCode": exit_code, "reason": "Error", "finishedAt": created}
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
    return {
        "metadata": {
            "name": f"demo-train-{index}-{created}",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": status,
    }


def indexed_job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "demo-train"}, "spec": {"completionMode": "Indexed"}, **status}


def test_indexed_job_with_one_index_retried_counts_one_restart_and_warns() -> None:
    pods = [pod(0, "Running", "t1"), pod(1, "Failed", "t1", exit_code=1), pod(1, "Pending", "t2")]
    trainer = observe_job(indexed_job(status={"active": 2, "failed": 1}), pods, "trainer")
    assert trainer.restarts == 1 and not trainer.complete
    plan = step(running(two_nodes()), trainer)
    assert plan.status.phase == "Running" and plan.status.restarts == 1
    (warning,) = plan.events
    assert (warning.type, warning.reason) == ("Warning", "TrainerRestarted")
    assert "exit code 1 (Error)" in warning.message and "restart 1 of" in warning.message


def test_observe_does_not_call_a_job_with_one_succeeded_pod_complete() -> None:
    pods = [pod(0, "Succeeded", "t1", exit_code=0), pod(1, "Running", "t1")]
    trainer = observe_job(indexed_job(status={"succeeded": 1}), pods, "trainer")
    assert not trainer.complete and not trainer.failed_for_good
    assert trainer.running_pods == 1 and trainer.restarts == 0


def test_a_crash_retried_to_success_never_goes_backwards_and_warns_once() -> None:
    sft = job()
    phases, events = [], []
    crashed = dict(failed=1, terminations=(CRASH,), restarts=0)
    for trainer in (
        None,
        observed(),
        observed(running_pods=1, restarts=0),
        observed(**crashed),  # the replacement pod does not exist yet
        observed(**{**crashed, "restarts": 1}),
        observed(**{**crashed, "running_pods": 1, "restarts": 1}),
        observed(**{**crashed, "succeeded": 1, "restarts": 1}),  # done, Job not yet Complete
        observed(
            **{**crashed, "succeeded": 1, "restarts": 1},
            conditions={"Complete": ("True", "", "")},
        ),
    ):
        plan = step(sft, trainer)
        phases.append(plan.status.phase)
        events.extend(plan.events)
    assert phases == [
        *("Pending", "Queued", "Running", "Running", "Running", "Running", "Running"),
        "Succeeded",
    ]
    warnings = [e for e in events if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["TrainerRestarted"]
    assert "RuntimeError: CUDA error" in warnings[0].message
    assert sft.status is not None and sft.status.restarts == 1
    assert not any("restarting" in e.message.lower() for e in events if e.reason == "Succeeded")


def test_a_failure_not_retried_counts_no_restart() -> None:
    failed = observed(
        failed=1,
        conditions={"Failed": ("True", "PodFailurePolicy", "rule 0")},
        terminations=(ended(1, "Error", "RuntimeError: boom"),),
        restarts=0,
    )
    plan = step(running(job()), failed)
    assert plan.status.phase == "Failed" and plan.status.restarts == 0
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "Failed")]
    assert "exit code 1 (Error)" in plan.events[0].message


def test_every_transition_event_carries_its_conditions_message() -> None:
    sft = job()
    plans = [step(sft, t) for t in (None, observed(), observed(running_pods=1))]
    events = [e for p in plans for e in p.events]
    assert [e.reason for e in events] == ["Pending", "Queued", "Running"]
    for event, plan in zip(events, plans, strict=True):
        assert event.message and event.message != event.reason
        causes = {c.message for c in plan.status.conditions}
        assert event.message in causes


def test_infeasible_event_carries_the_feasible_message_not_the_datasets() -> None:
    problem = "method.type qlora needs a GPU: set resources.gpus to at least 1"
    plan = plan_job(job(), JobFacts([dataset(READY)], None, problem), NOW)
    assert plan.events == (Event("Warning", "Failed", problem),)
    assert condition(plan.status, "Feasible") == ("False", "Infeasible", problem)
    assert not plan.create_trainer


def test_ready_and_feasible_plans_the_trainer() -> None:
    plan = plan_job(job(), JobFacts([dataset(READY)], None), NOW)
    assert plan.create_trainer and plan.status.phase == "Pending"
    assert not plan_job(job(), JobFacts([], None), NOW).create_trainer


def test_suspend_and_resume_is_not_taken_for_a_restart() -> None:
    sft = running(job(suspend=True))
    assert step(sft, observed(suspended=True)).status.phase == "Suspended"
    sft.spec.suspend = False
    plan = step(sft, observed())
    assert plan.status.phase == "Queued" and plan.events[0].reason == "Queued"


def test_an_edit_after_the_end_is_not_in_effect_so_observed_generation_stays() -> None:
    sft = job()
    sft.status = SFTJobStatus(phase="Succeeded", completion_time="t9", observed_generation=1)
    sft.metadata.generation = 2  # e.g. ttlSecondsAfterFinished edited on a finished job
    plan = step(sft, observed(conditions={"Complete": ("True", "", "")}))
    assert plan.status.observed_generation == 1 and plan.events == ()


def test_an_edit_before_the_end_is_in_effect_at_once() -> None:
    sft = running(job())
    sft.metadata.generation = 3  # e.g. spec.suspend, which the apply step syncs to the Job
    plan = step(sft, observed(running_pods=1))
    assert plan.status.observed_generation == 3
    assert {c.observed_generation for c in plan.status.conditions} == {3}


def test_a_preempted_pod_is_a_normal_event_and_the_run_stays_running() -> None:
    message = "stopped by SIGTERM after step 7, checkpoint written; the next pod resumes at step 8"
    preempted = ended(
        75,
        "Error",
        {"phase": "Running", "reason": "Preempted", "message": message},
        pod="demo-train-a",
    )
    sft = running(job())
    plan = step(sft, observed(failed=1, running_pods=1, restarts=1, terminations=(preempted,)))
    assert plan.status.phase == "Running" and plan.status.restarts == 1
    (event,) = plan.events
    assert (event.type, event.reason) == ("Normal", "Preempted")
    assert "demo-train-a" in event.message and "resumes at step 8" in event.message
    assert "not counted against spec.retry.maxRestarts" in event.message


def test_one_pod_done_while_the_other_waits_for_its_retry_is_restarting_not_finishing() -> None:
    mix = observed(succeeded=1, failed=1, terminations=(ended(0, "Completed", pod="p0"), CRASH))
    plan = step(running(two_nodes()), mix)
    assert plan.status.phase == "Running"
    _, reason, message = condition(plan.status, "Running")
    assert reason == "Restarting" and "RuntimeError: CUDA error" in message
