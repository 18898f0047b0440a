"""SFTJob phase and conditions from observed children (pure)."""

from __future__ import annotations

from kubesft.api import SFTJob, SFTJobStatus
from kubesft.operator.derive_job import JobFacts, derive_job_status
from tests.unit.operator.fixtures import READY, dataset, ended, job, observed

NOW = "2026-01-01T00:01:00Z"


def conditions(status: SFTJobStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_missing_dataset_waits_and_says_what_to_do() -> None:
    st = derive_job_status(job(), JobFacts([], None), NOW)
    assert st.phase == "WaitingForDataset"
    status, reason, message = conditions(st)["DatasetReady"]
    assert (status, reason) == ("False", "DatasetNotFound") and "spec.dataset.name" in message


def test_failed_dataset_keeps_the_job_waiting_with_its_rows() -> None:
    failed = dataset(
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "DatasetInvalid",
                    "message": "row 2 messages[1].role: unknown role 'bot'",
                }
            ],
        }
    )
    st = derive_job_status(job(), JobFacts([failed], None), NOW)
    assert st.phase == "WaitingForDataset"
    _, reason, message = conditions(st)["DatasetReady"]
    assert reason == "DatasetFailed" and "row 2" in message


def test_stale_dataset_generation_is_not_ready() -> None:
    stale = dataset(READY, generation=2)
    assert derive_job_status(job(), JobFacts([stale], None), NOW).phase == "WaitingForDataset"


def test_infeasible_request_fails_before_any_pod() -> None:
    st = derive_job_status(job(), JobFacts([dataset(READY)], None, "use method.type qlora"), NOW)
    assert st.phase == "Failed"
    assert conditions(st)["Feasible"] == ("False", "Infeasible", "use method.type qlora")


def test_ready_and_feasible_is_pending_creation() -> None:
    st = derive_job_status(job(), JobFacts([dataset(READY)], None), NOW)
    assert st.phase == "Pending" and conditions(st)["Feasible"][0] == "True"


def test_feasible_names_the_strategy_and_the_per_gpu_estimate() -> None:
    fits = "sharded (fsdp) over 16 GPUs, ~20.8 GiB per GPU"
    st = derive_job_status(job(), JobFacts([dataset(READY)], None, None, fits), NOW)
    assert conditions(st)["Feasible"][:2] == ("True", "Feasible")
    assert conditions(st)["Feasible"][2].startswith(fits)


def test_running_queued_and_suspended() -> None:
    ready = dataset(READY)
    running = derive_job_status(job(), JobFacts([ready], observed(running_pods=1)), NOW)
    assert running.phase == "Running" and conditions(running)["Running"][0] == "True"
    assert running.start_time == NOW
    queued = derive_job_status(job(), JobFacts([ready], observed(suspended=True)), NOW)
    assert queued.phase == "Queued" and conditions(queued)["Admitted"][1] == "WaitingForQueue"
    paused = derive_job_status(job(suspend=True), JobFacts([ready], observed(suspended=True)), NOW)
    assert paused.phase == "Suspended" and "spec.suspend" in conditions(paused)["Admitted"][2]
    pending = derive_job_status(job(), JobFacts([ready], observed()), NOW)
    assert pending.phase == "Queued" and conditions(pending)["Admitted"][0] == "True"


def test_success_copies_the_trainer_report_with_its_reason() -> None:
    summary = {
        "phase": "Succeeded",
        "reason": "EarlyStopped",
        "message": "trained 20 steps; output in /output/run/final",
        "fingerprint": {"dataset": "d" * 64, "config": "c" * 64},
        "progress": {"step": 20, "totalSteps": 20, "percent": 99},
        "metrics": {"trainLoss": 0.5, "evalLoss": 0.7},
        "evaluation": {"evalLoss": 0.7, "samples": [{"prompt": "p", "before": "x", "after": "y"}]},
        "output": {"path": "/output/run/final", "kind": "adapter"},
        "checkpoints": [{"step": 10, "path": "c10", "evalLoss": 0.9}],
        "bestCheckpoint": "c10",
    }
    done = observed(
        succeeded=1,
        conditions={"Complete": ("True", "", "")},
        completion_time="2026-01-01T00:00:50Z",
        terminations=(ended(0, "Completed", summary),),
        image="kubesft/trainer@sha256:" + "e" * 64,
    )
    st = derive_job_status(job(), JobFacts([dataset(READY)], done), NOW)
    assert st.phase == "Succeeded" and st.progress is not None and st.progress.percent == 100
    assert st.evaluation is not None and st.evaluation.samples[0].after == "y"
    assert st.best_checkpoint == "c10" and st.checkpoints[0].eval_loss == 0.9
    assert st.completion_time == "2026-01-01T00:00:50Z"
    assert conditions(st)["Complete"] == ("True", "EarlyStopped", summary["message"])
    assert st.fingerprint is not None and st.fingerprint.dataset == "d" * 64
    assert st.fingerprint.image == "kubesft/trainer@sha256:" + "e" * 64  # from the node


def test_exit_code_2_fails_with_the_trainers_own_reason_and_message() -> None:
    msg = {
        "phase": "Failed",
        "reason": "InvalidInput",
        "fingerprint": {"dataset": "d" * 64, "config": "c" * 64},
        "message": "spec.training.maxSeqLength: 16 is shorter than any prompt",
    }
    failed = observed(
        failed=1,
        conditions={"Failed": ("True", "PodFailurePolicy", "rule 0")},
        terminations=(ended(2, "Error", msg),),
    )
    st = derive_job_status(job(), JobFacts([dataset(READY)], failed), NOW)
    assert st.phase == "Failed"
    _, reason, message = conditions(st)["Failed"]
    assert reason == "InvalidInput" and message == msg["message"]
    assert st.fingerprint is not None and st.fingerprint.config == "c" * 64


def test_a_failure_without_a_termination_message_names_the_exit_and_the_log_tail() -> None:
    failed = observed(
        failed=1,
        conditions={"Failed": ("True", "PodFailurePolicy", "rule 0 matched")},
        terminations=(ended(2, "Error", "loading\nValueError: bad things"),),
    )
    _, reason, message = conditions(derive_job_status(job(), JobFacts([], failed), NOW))["Failed"]
    assert reason == "TrainerFailed"
    assert "exit code 2 (Error)" in message and "ValueError: bad things" in message


def test_oom_killed_suggests_what_to_change() -> None:
    oom = observed(
        failed=4,
        conditions={"Failed": ("True", "BackoffLimitExceeded", "")},
        terminations=(ended(137, "OOMKilled"),),
        restarts=3,
    )
    st = derive_job_status(job(), JobFacts([dataset(READY)], oom), NOW)
    _, reason, message = conditions(st)["Failed"]
    assert reason == "OOMKilled" and "qlora" in message and "microBatchSize" in message
    assert st.restarts == 3


def test_finished_status_is_kept_when_children_are_gone() -> None:
    finished: SFTJob = job()
    finished.status = SFTJobStatus(phase="Succeeded", completion_time="t")
    assert derive_job_status(finished, JobFacts([], None), NOW).phase == "Succeeded"


def test_transition_time_kept_while_condition_holds() -> None:
    first = job()
    first.status = derive_job_status(first, JobFacts([], None), "t1")
    again = derive_job_status(first, JobFacts([], None), "t2")
    assert (
        next(c for c in again.conditions if c.type == "DatasetReady").last_transition_time == "t1"
    )
