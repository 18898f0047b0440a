"""Reporting: rate-limited progress, metrics.jsonl, loss.png, eval.json, termination message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from kubesft.api import report as contract
from kubesft.api.job_status import CheckpointInfo, Metrics, Progress, SFTJobStatus
from kubesft.api.mixture import MixtureEntry
from kubesft.api.report import TrainerReason, TrainerReport, TrainerTermination
from kubesft.api.retention import RetentionStatus
from kubesft_trainer import checkpoint
from kubesft_trainer.evaluate import EvalResult
from kubesft_trainer.report import Reporter, last_step, read_metrics
from kubesft_trainer.results import evaluation_status, write_eval_json
from kubesft_trainer.sinks import FileSink, MetricsRecord, RateLimitedSink
from kubesft_trainer.termination import fit_termination_message, write_termination_message
from kubesft_trainer.tracking.base import scalars

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT = EvalResult(loss=1.5, perplexity=4.4817, token_accuracy=0.6, tokens=120)


class ListSink:
    def __init__(self) -> None:
        self.reports: list[dict] = []

    def send(self, report: TrainerReport | dict) -> None:
        if isinstance(report, BaseModel):
            report = report.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.reports.append(json.loads(json.dumps(report)))


class RecordingMetricsSink:
    def __init__(self) -> None:
        self.records: list[MetricsRecord] = []
        self.closed = 0

    def write(self, record: MetricsRecord) -> None:
        self.records.append(dict(record))

    def close(self) -> None:
        self.closed += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def run_steps(reporter: Reporter, clock: FakeClock, steps: range, total: int = 10) -> None:
    for step in steps:
        clock.now += 2.0
        reporter.progress(step, total, step / total, 1000.0, 3.0 / step, 1e-4, 0.5)


def test_rate_limit_drops_close_updates_but_not_forced_ones_and_flushes_the_last() -> None:
    sink, clock = ListSink(), FakeClock()
    limited = RateLimitedSink(sink, min_interval_s=5.0, clock=clock)
    for t, step in [(0, 1), (1, 2), (4.9, 3), (5.0, 4), (6, 5)]:
        clock.now = t
        limited.send({"step": step})
    clock.now = 7
    limited.send({"step": 6, "final": True}, force=True)
    clock.now = 8
    limited.send({"step": 7})
    assert [r["step"] for r in sink.reports] == [1, 4, 6]
    limited.close()
    assert [r["step"] for r in sink.reports] == [1, 4, 6, 7]
    limited.close()
    assert len(sink.reports) == 4


def test_progress_reports_are_status_fields_with_percent_and_eta(tmp_path: Path) -> None:
    sink, clock = ListSink(), FakeClock()
    reporter = Reporter(tmp_path, sink, None, min_interval_s=5.0, clock=clock)
    run_steps(reporter, clock, range(1, 6))
    reporter.eval(5, RESULT)
    reporter.checkpoint(5, tmp_path / "checkpoint-5", RESULT.loss)

    # Steps every 2 s with a 5 s interval: steps 1, 4, then forced eval and checkpoint.
    assert [r["progress"]["step"] for r in sink.reports] == [1, 4, 5, 5]
    report = sink.reports[-1]
    assert set(report["progress"]) <= aliases(Progress)
    assert set(report["metrics"]) <= aliases(Metrics)
    assert set(report["checkpoints"][0]) <= aliases(CheckpointInfo)
    status = SFTJobStatus.model_validate(report)
    assert status.progress.percent == 50
    assert status.progress.eta_seconds == 10  # 5 steps left at 2 s per step
    assert status.progress.updated_at.endswith("Z")
    assert status.metrics.train_loss == pytest.approx(0.6)
    assert status.metrics.eval_loss == 1.5
    assert status.metrics.token_accuracy == 0.6
    assert status.best_checkpoint == str(tmp_path / "checkpoint-5")


def test_metrics_jsonl_has_one_line_per_event(tmp_path: Path) -> None:
    clock = FakeClock()
    reporter = Reporter(tmp_path, ListSink(), None, clock=clock)
    run_steps(reporter, clock, range(1, 4))
    reporter.eval(3, RESULT)
    reporter.checkpoint(3, "/out/checkpoint-3", 1.5)
    reporter.progress(4, 10, 0.4, 900.0, float("nan"), 1e-4, None)

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: no NaN
    assert [(r["type"], r["step"]) for r in records] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("eval", 3),
        ("checkpoint", 3),
        ("train", 4),
    ]
    assert records[3]["evalLoss"] == 1.5 and records[3]["tokens"] == 120
    assert records[-1]["trainLoss"] is None
    assert read_metrics(tmp_path) == records
    assert last_step(tmp_path) == 4


def test_resume_drops_records_after_the_checkpoint_and_keeps_steps_continuous(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    first = Reporter(tmp_path, ListSink(), None, clock=clock)
    run_steps(first, clock, range(1, 5))
    first.checkpoint(2, "/out/checkpoint-2", None)
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"type":"train","step":')  # torn by a crash mid-write

    sink = ListSink()
    resumed = Reporter(tmp_path, sink, None, clock=clock, resume_step=2)
    assert last_step(tmp_path) == 2
    run_steps(resumed, clock, range(3, 5))

    assert [r["step"] for r in read_metrics(tmp_path) if r["type"] == "train"] == [1, 2, 3, 4]
    assert [c["path"] for c in sink.reports[-1]["checkpoints"]] == ["/out/checkpoint-2"]

    Reporter(tmp_path, ListSink(), None)  # a fresh start begins a new record
    assert read_metrics(tmp_path) == []


def test_pruned_checkpoints_leave_the_reported_list(tmp_path: Path) -> None:
    sink = ListSink()
    reporter = Reporter(tmp_path, sink, None)
    reporter.checkpoint(1, "/c/1", 2.0)
    reporter.checkpoint(2, "/c/2", 1.0)
    reporter.checkpoint(3, "/c/3", 1.5, kept=["/c/2", "/c/3"])
    report = sink.reports[-1]
    assert [c["path"] for c in report["checkpoints"]] == ["/c/2", "/c/3"]
    assert report["bestCheckpoint"] == "/c/2"


def test_finish_writes_a_png_plot_the_final_report_and_the_termination_message(
    tmp_path: Path,
) -> None:
    sink, clock = ListSink(), FakeClock()
    log = tmp_path / "termination-log"
    reporter = Reporter(tmp_path / "out", sink, log, clock=clock)
    run_steps(reporter, clock, range(1, 11))
    reporter.eval(10, RESULT)
    evaluation = evaluation_status(RESULT, [{"prompt": "2 plus 2"}], ["five"], ["4"])

    done = TrainerTermination(
        phase="Succeeded", reason=TrainerReason.COMPLETED, evaluation=evaluation
    )
    final = reporter.finish(done)

    assert (tmp_path / "out" / "loss.png").read_bytes().startswith(PNG_SIGNATURE)
    dumped = final.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert sink.reports[-1] == dumped
    message = json.loads(log.read_text())
    assert message == dumped
    parsed = contract.parse_termination(log.read_text(), TrainerTermination)
    assert parsed is not None and parsed.reason is TrainerReason.COMPLETED
    status = SFTJobStatus.model_validate(message)
    assert status.progress.percent == 100
    assert status.evaluation == evaluation
    assert status.evaluation.samples[0].after == "4"


def big_summary(samples: int, checkpoints: int) -> TrainerTermination:
    return TrainerTermination.model_validate(big_summary_fields(samples, checkpoints))


def big_summary_fields(samples: int, checkpoints: int) -> dict:
    return {
        "phase": "Succeeded",
        "reason": "Completed",
        "metrics": {"trainLoss": 0.5},
        "evaluation": {
            "evalLoss": 1.0,
            "samples": [{"prompt": "p" * 5000, "before": "é" * 5000, "after": "a" * 5000}]
            * samples,
        },
        "checkpoints": [
            {"step": s, "path": f"/out/checkpoint-{s:06d}", "evalLoss": 1.0 + (s != 1)}
            for s in range(checkpoints)
        ],
        "bestCheckpoint": "/out/checkpoint-000001",
        "output": {"path": "/out/adapter", "kind": "adapter"},
    }


def test_termination_message_fits_4096_bytes_by_cutting_huge_samples(tmp_path: Path) -> None:
    summary = big_summary_fields(samples=20, checkpoints=4)
    path = tmp_path / "termination-log"

    assert write_termination_message(path, TrainerTermination.model_validate(summary))

    text = path.read_bytes()
    assert len(text) <= 4096
    message = json.loads(text)
    assert message["truncated"] is True
    assert message["output"] == summary["output"]
    assert message["checkpoints"] == summary["checkpoints"]
    samples = message["evaluation"]["samples"]
    assert len(samples) == 20
    assert all(len(value) <= 64 and value.endswith("…") for value in samples[0].values())
    write_termination_message(tmp_path / "again", TrainerTermination.model_validate(summary))
    assert (tmp_path / "again").read_bytes() == text  # deterministic


def test_termination_message_keeps_only_the_best_of_many_checkpoints(tmp_path: Path) -> None:
    summary = big_summary_fields(samples=2, checkpoints=200)
    path = tmp_path / "termination-log"
    assert write_termination_message(path, TrainerTermination.model_validate(summary))
    assert len(path.read_bytes()) <= 4096
    message = json.loads(path.read_text())
    assert message["checkpoints"] == [summary["checkpoints"][1]]
    assert message["evaluation"]["samples"] == []
    assert Metrics.model_validate(message["metrics"]) == Metrics.model_validate(summary["metrics"])


def test_termination_message_keeps_phase_and_reason_under_a_small_limit(tmp_path: Path) -> None:
    summary = TrainerTermination(
        phase="Failed",
        reason=TrainerReason.TRAINING_ERROR,
        message="x" * 10000,
        output={"path": "/o" * 500},
    )
    for limit in (4096, 300, 80):
        write_termination_message(tmp_path / "log", summary, limit=limit)
        text = (tmp_path / "log").read_text()
        assert len(text.encode()) <= limit
        parsed = contract.parse_termination(text, TrainerTermination)
        assert parsed is not None and parsed.reason is TrainerReason.TRAINING_ERROR


def test_unwritable_termination_log_is_skipped(tmp_path: Path) -> None:
    failed = TrainerTermination(phase="Failed", reason=TrainerReason.INVALID_INPUT)
    assert not write_termination_message(tmp_path / "missing" / "log", failed)


def test_what_is_not_a_termination_message_parses_as_none() -> None:
    for text in ("Traceback (most recent call last):", "[1]", '{"phase": "Maybe"}', ""):
        assert contract.parse_termination(text, TrainerTermination) is None


def test_file_sink_and_eval_json(tmp_path: Path) -> None:
    FileSink(tmp_path / "progress.json").send(TrainerReport(progress=Progress(step=3)))
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress == {"progress": {"step": 3, "percent": 0}}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]

    prompts = [{"messages": [{"role": "user", "content": "hi"}]}, {"prompt": "1 plus 1"}]
    path = write_eval_json(
        tmp_path, ["a", "b"], ["hello", "2"], prompts, RESULT, references=["hey", "2"]
    )
    doc = json.loads(path.read_text())
    assert doc["metrics"] == {
        "evalLoss": 1.5,
        "perplexity": 4.4817,
        "tokenAccuracy": 0.6,
        "tokens": 120,
    }
    assert doc["samples"][0] == {
        "prompt": prompts[0],
        "promptText": "hi",
        "reference": "hey",
        "before": "a",
        "after": "hello",
    }


def test_peak_gpu_memory_reaches_metrics_and_the_status_progress(tmp_path: Path) -> None:
    sink, clock = ListSink(), FakeClock()
    reporter = Reporter(tmp_path, sink, None, min_interval_s=0.0, clock=clock)
    reporter.progress(1, 10, 0.1, 1000.0, 3.0, 1e-4, 0.5, gpu_memory_gib=12.3456789)
    reporter.progress(2, 10, 0.2, 1000.0, 2.0, 1e-4, 0.5)  # on CPU: nothing to report

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["gpuMemoryGiB"] for r in records] == [12.3457, None]
    first = SFTJobStatus.model_validate(sink.reports[0])
    assert first.progress is not None and first.progress.peak_gpu_memory_gi_b == 12.3457
    assert "peakGpuMemoryGiB" not in sink.reports[-1]["progress"]


def test_best_checkpoint_is_the_earliest_of_equal_losses_in_status_and_pruning(
    tmp_path: Path,
) -> None:
    sink = ListSink()
    reporter = Reporter(tmp_path, sink, None)
    reporter.checkpoint(1, "/c/1", 2.0)
    reporter.checkpoint(2, "/c/2", 1.0)
    reporter.checkpoint(3, "/c/3", 1.0)
    assert sink.reports[-1]["bestCheckpoint"] == "/c/2"
    records = [
        checkpoint.CheckpointRecord(step, Path(f"/c/{step}"), loss, "")
        for step, loss in ((1, 2.0), (2, 1.0), (3, 1.0))
    ]
    best = checkpoint.best_checkpoint(records)
    assert best is not None and best.step == 2


def test_metric_sinks_get_every_record_and_are_closed_once(tmp_path: Path) -> None:
    metrics, clock = RecordingMetricsSink(), FakeClock()
    reporter = Reporter(tmp_path, ListSink(), None, clock=clock, metric_sinks=[metrics])
    run_steps(reporter, clock, range(1, 4))  # the progress sink is rate limited; these not
    reporter.eval(3, RESULT)
    reporter.finish(TrainerTermination(phase="Succeeded", reason=TrainerReason.COMPLETED))
    reporter.close()
    assert [(r["type"], r["step"]) for r in metrics.records] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("eval", 3),
    ]
    assert metrics.records == read_metrics(tmp_path)
    assert metrics.closed == 1


def test_a_failing_metric_sink_does_not_stop_the_record(tmp_path: Path) -> None:
    class Broken:
        def write(self, record: MetricsRecord) -> None:
            raise OSError("tracker down")

        def close(self) -> None:
            raise OSError("tracker down")

    reporter = Reporter(tmp_path, ListSink(), None, metric_sinks=[Broken()])
    reporter.progress(1, 2, 0.5, 10.0, 1.0, 1e-4, 0.1)
    reporter.close()
    assert last_step(tmp_path) == 1


def test_mixture_plan_goes_out_before_the_first_step_and_eval_per_dataset_is_replayed(
    tmp_path: Path,
) -> None:
    sink, tracker = ListSink(), RecordingMetricsSink()
    reporter = Reporter(tmp_path, sink, min_interval_s=0, metric_sinks=[tracker])
    plan = [
        MixtureEntry(name="chat", weight=0.9, examples=10, examples_per_epoch=9,
                     tokens_per_epoch=300, repeats=0.9),
        MixtureEntry(name="text", weight=0.1, examples=1, examples_per_epoch=1,
                     tokens_per_epoch=80, repeats=1.0),
    ]  # fmt: skip
    reporter.mixture(plan)
    assert [e["name"] for e in sink.reports[-1]["mixture"]] == ["chat", "text"]
    assert "progress" not in sink.reports[-1]  # before any step

    chat = EvalResult(loss=1.0, perplexity=2.7, token_accuracy=0.5, tokens=100)
    text = EvalResult(loss=2.5, perplexity=12.2, token_accuracy=0.2, tokens=20)
    overall = EvalResult(1.25, 3.5, 0.45, 120, by_dataset={"chat": chat, "text": text})
    before = RetentionStatus(name="general", loss_before=2.0, loss=2.0, step=0,
                             relative_change=0.0, tokens=50)  # fmt: skip
    reporter.eval(0, overall, before)
    later = before.model_copy(update={"loss": 2.3, "step": 4, "relative_change": 0.15})
    reporter.eval(4, overall, later)
    report = sink.reports[-1]
    assert report["metrics"]["evalByDataset"] == [
        {"name": "chat", "evalLoss": 1.0, "tokens": 100},
        {"name": "text", "evalLoss": 2.5, "tokens": 20},
    ]
    assert report["retention"] == {"name": "general", "lossBefore": 2.0, "loss": 2.3,
                                   "step": 4, "relativeChange": 0.15, "tokens": 50}  # fmt: skip
    assert scalars(tracker.records[-1]) == {
        "eval/loss": 1.25, "eval/perplexity": 3.5, "eval/token_accuracy": 0.45,
        "eval/chat/loss": 1.0, "eval/text/loss": 2.5,
        "retention/loss": 2.3, "retention/loss_before": 2.0, "retention/relative_change": 0.15,
    }  # fmt: skip

    # A resumed run rebuilds both from metrics.jsonl (the plan is drawn again).
    resumed = Reporter(tmp_path, ListSink(), resume_step=4)
    assert resumed.report().retention == RetentionStatus.model_validate(report["retention"])
    assert resumed.report().metrics.eval_by_dataset[1].eval_loss == 2.5


def test_a_big_mixture_keeps_its_plan_and_latest_eval_per_dataset_in_4096_bytes() -> None:
    names = [f"task-{i:02d}-with-a-long-descriptive-name" for i in range(16)]
    evals = [{"name": n, "evalLoss": 1.234567, "tokens": 123456} for n in names]
    summary = big_summary_fields(samples=4, checkpoints=3)
    summary["metrics"]["evalByDataset"] = evals
    summary["evaluation"]["byDataset"] = evals
    summary["mixture"] = [
        {"name": n, "weight": 0.0625, "examples": 12345, "examplesPerEpoch": 12345,
         "tokensPerEpoch": 1234567, "repeats": 1.0}
        for n in names
    ]  # fmt: skip
    summary["retention"] = {"name": "general", "lossBefore": 2.0, "loss": 2.2, "step": 9}
    text = fit_termination_message(TrainerTermination.model_validate(summary))
    assert len(text.encode()) <= 4096
    message = json.loads(text)
    assert "byDataset" not in message["evaluation"] and message["evaluation"]["evalLoss"] == 1.0
    assert message["metrics"]["evalByDataset"] == evals
    assert [entry["name"] for entry in message["mixture"]] == names
    assert message["retention"]["loss"] == 2.2
