"""Per-dataset eval results and the retention status, from summed losses."""

from __future__ import annotations

import math

import pytest

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.eval_sets import (
    describe_retention,
    forgetting_stop,
    overall_result,
    retention_status,
)
from kubesft_trainer.evaluate import EvalResult
from tests.support.sft_run import BASE_SPEC


def test_the_overall_loss_weighs_members_by_their_graded_tokens() -> None:
    sums = [(100.0, 30, 50), (30.0, 2, 10)]  # losses 2.0 and 3.0
    result = overall_result(["chat", "code"], sums, by_dataset=True)
    assert result.loss == pytest.approx(130 / 60) and result.tokens == 60
    assert result.token_accuracy == pytest.approx(32 / 60)
    assert {n: r.loss for n, r in result.by_dataset.items()} == {"chat": 2.0, "code": 3.0}
    assert overall_result(["chat", "code"], sums, by_dataset=False).by_dataset == {}


def scored(loss: float) -> EvalResult:
    return EvalResult(loss, math.exp(loss), 0.5, tokens=40)


def test_retention_before_training_is_its_own_baseline_and_later_ones_compare_to_it() -> None:
    before = retention_status("general", scored(2.0), step=0, loss_before=None)
    assert (before.loss_before, before.loss, before.relative_change) == (2.0, 2.0, 0.0)
    later = retention_status("general", scored(2.5), step=10, loss_before=2.0)
    assert (later.loss_before, later.loss, later.step) == (2.0, 2.5, 10)
    assert later.relative_change == pytest.approx(0.25) and later.tokens == 40
    assert describe_retention(later) == (
        "step 10: retention loss on SFTDataset 'general' 2.5 (+25.0%), 2.0 before training"
    )
    unknown = retention_status("general", scored(2.5), step=10, loss_before=None)
    assert unknown.relative_change is None


@pytest.mark.parametrize(
    ("early_stop", "loss", "stops"), [(True, 2.5, True), (True, 2.1, False), (False, 3.0, False)]
)
def test_early_stop_on_forgetting_only_when_asked_and_past_the_threshold(
    early_stop: bool, loss: float, stops: bool
) -> None:
    spec = SFTJobSpec.model_validate(
        {
            **BASE_SPEC,
            "evaluation": {
                "retention": {"name": "general", "threshold": 0.1, "earlyStop": early_stop}
            },
        }
    )
    status = retention_status("general", scored(loss), step=4, loss_before=2.0)
    message = forgetting_stop(spec, status)
    assert (message is not None) == stops
    if message:
        assert message.startswith("stopped early on forgetting: retention loss on SFTDataset")
    before = retention_status("general", scored(9.0), step=0, loss_before=None)
    assert forgetting_stop(spec, before) is None  # nothing trained yet
