"""metrics.evalHistory: each evaluation beside the mean train loss since the previous one."""

from __future__ import annotations

import json
from pathlib import Path

from kubesft.api.job_status import EVAL_HISTORY, EvalPoint
from kubesft.api.overfitting import detect_overfitting
from kubesft.api.report import ExitCode, TrainerReport
from kubesft_trainer import cli
from kubesft_trainer.evaluate import EvalResult
from kubesft_trainer.report import Reporter
from tests.support.sft_run import trainer_config, write_config, write_prepared_dataset


class NullSink:
    def send(self, report: TrainerReport) -> None:
        pass


def train(reporter: Reporter, steps: range, loss: float) -> None:
    for step in steps:
        reporter.progress(step, 100, None, 10.0, loss + step / 1000, 1e-4, 1.0)


def result(loss: float) -> EvalResult:
    return EvalResult(loss=loss, perplexity=1.0, token_accuracy=0.5, tokens=10)


def history(reporter: Reporter) -> list[tuple[int, float | None, float]]:
    assert reporter.metrics is not None
    return [(p.step, p.train_loss, p.eval_loss) for p in reporter.metrics.eval_history]


def test_each_evaluation_gets_the_mean_train_loss_since_the_last(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path, NullSink(), min_interval_s=0)
    reporter.eval(0, result(3.0))  # before training: no train loss yet
    train(reporter, range(1, 5), 2.0)  # 2.001 .. 2.004
    reporter.eval(4, result(2.5))
    train(reporter, range(5, 7), 1.0)  # 1.005, 1.006
    reporter.eval(6, result(2.6))
    assert history(reporter) == [(0, None, 3.0), (4, 2.0025, 2.5), (6, 1.0055, 2.6)]


def test_the_history_is_capped_and_survives_a_resume(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path, NullSink(), min_interval_s=0)
    for i in range(EVAL_HISTORY + 5):
        train(reporter, range(2 * i + 1, 2 * i + 3), 1.0)
        reporter.eval(2 * i + 2, result(2.0 + i))
    kept = history(reporter)
    assert len(kept) == EVAL_HISTORY and kept[-1][0] == 2 * (EVAL_HISTORY + 4) + 2
    resumed = Reporter(tmp_path, NullSink(), min_interval_s=0, resume_step=20)
    # Replayed from metrics.jsonl: the evaluations up to the resumed step, same numbers.
    expected = [(2 * i + 2, round(1.0 + (4 * i + 3) / 2000, 6), 2.0 + i) for i in range(10)]
    assert history(resumed) == expected


def trained_history(model_dir: Path, tmp_path: Path, learning_rate: float) -> list[EvalPoint]:
    """Full fine-tuning of the tiny model on 8 examples of random words for 16 steps,
    evaluated every 2 on 8 others; the evalHistory of its termination message."""
    data = write_prepared_dataset(tmp_path / "data", train=8, evals=8)
    training = {"maxSteps": 16, "learningRate": learning_rate, "gradientAccumulation": 1}
    config = trainer_config(
        model_dir,
        data,
        tmp_path / "out",
        method={"type": "full", "lora": None},
        training={**training, "microBatchSize": 4},
        evaluation={"everySteps": 2, "samples": 0},
    )
    assert (
        cli.main(["train", "--config", str(write_config(tmp_path / "c.json", config))])
        == ExitCode.OK
    )
    summary = json.loads((tmp_path / "out.termination-log").read_text())
    return [EvalPoint.model_validate(p) for p in summary["metrics"]["evalHistory"]]


def test_memorizing_random_words_is_flagged_and_a_gentle_run_is_not(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Random words: nothing carries over to the eval rows, so a high learning rate can only
    # memorize the training rows, which raises the eval loss while the train loss falls.
    steep = trained_history(tiny_model_dir, tmp_path / "steep", 1e-2)
    assert [p.step for p in steep] == list(range(0, 17, 2))
    found = detect_overfitting(steep, patience=3)
    assert found is not None, steep
    assert found.last.eval_loss > found.first.eval_loss
    gentle = trained_history(tiny_model_dir, tmp_path / "gentle", 3e-3)
    assert detect_overfitting(gentle, patience=3) is None, gentle
