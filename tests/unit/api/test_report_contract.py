"""The trainer→operator contract (kubesft.api.report) fits the SFTJob status it feeds."""

from __future__ import annotations

from kubesft.api import SFTJobStatus
from kubesft.api.job_status import CheckpointInfo, Fingerprint
from kubesft.api.report import (
    ExitCode,
    TrainerReason,
    TrainerReport,
    TrainerTermination,
    best_checkpoint,
)
from kubesft.operator.derive_job import apply_report
from kubesft.operator.pod_parts import pod_failure_policy


def test_every_reported_field_is_a_status_field_of_the_same_type() -> None:
    status_fields = SFTJobStatus.model_fields
    for name, field in TrainerReport.model_fields.items():
        assert name in status_fields, name
        assert status_fields[name].alias == field.alias
        # The report's are optional (unset: not reported); the status may default them.
        assert str(status_fields[name].annotation) in str(field.annotation), name


def test_applying_a_report_sets_exactly_what_it_carries() -> None:
    status = SFTJobStatus(phase="Running", restarts=2)
    report = TrainerTermination(
        phase="Succeeded",
        reason=TrainerReason.EARLY_STOPPED,
        best_checkpoint="/out/checkpoints/step-4",
        checkpoints=[CheckpointInfo(step=4, path="/out/checkpoints/step-4")],
        fingerprint=Fingerprint(dataset="d", config="c"),
    )
    apply_report(status, report)
    assert status.best_checkpoint == "/out/checkpoints/step-4"
    assert status.fingerprint == Fingerprint(dataset="d", config="c")
    assert status.phase == "Running" and status.restarts == 2  # the operator's own stay
    assert report.status_fields().keys() == {"checkpoints", "bestCheckpoint", "fingerprint"}


def test_best_checkpoint_is_the_lowest_loss_and_the_earliest_of_equals() -> None:
    points = [CheckpointInfo(step=s, path=f"c{s}", eval_loss=loss) for s, loss in
              [(1, 2.0), (2, None), (3, 1.0), (4, 1.0), (5, 1.5)]]  # fmt: skip
    best = best_checkpoint(points)
    assert best is not None and best.step == 3
    assert best_checkpoint([CheckpointInfo(step=1, path="c1")]) is None


def test_the_job_fails_fast_on_the_invalid_exit_code_of_the_table() -> None:
    (rule, _) = pod_failure_policy("trainer")["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [ExitCode.INVALID]
