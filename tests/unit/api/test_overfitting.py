"""The overfitting rule: eval loss rising N evaluations in a row while train loss fell."""

from __future__ import annotations

import pytest

from kubesft.api.job_status import EvalPoint
from kubesft.api.overfitting import detect_overfitting


def history(*pairs: tuple[float | None, float]) -> list[EvalPoint]:
    """(train loss, eval loss) per evaluation, 100 steps apart."""
    return [
        EvalPoint(step=100 * (i + 1), train_loss=train, eval_loss=ev)
        for i, (train, ev) in enumerate(pairs)
    ]


def test_rising_eval_and_falling_train_for_patience_evaluations_is_overfitting() -> None:
    points = history((2.0, 2.1), (1.5, 1.8), (1.2, 1.9), (1.0, 2.0), (0.8, 2.2))
    found = detect_overfitting(points, patience=3)
    assert found is not None
    assert (found.first.step, found.last.step, found.evaluations) == (200, 500, 3)
    message = found.message()
    assert "rose for 3 consecutive evaluations (1.8 at step 200 -> 2.2 at step 500)" in message
    assert "train loss fell (1.5 -> 0.8)" in message and "keepBest" in message


def test_fewer_rises_than_patience_is_not_overfitting() -> None:
    points = history((2.0, 2.1), (1.5, 1.8), (1.2, 1.9), (1.0, 2.0))
    assert detect_overfitting(points, patience=3) is None
    assert detect_overfitting(points, patience=2) is not None


def test_a_dip_inside_the_window_breaks_the_run() -> None:
    points = history((2.0, 1.0), (1.8, 1.2), (1.6, 1.1), (1.4, 1.3), (1.2, 1.4))
    assert detect_overfitting(points, patience=3) is None
    equal = history((2.0, 1.0), (1.8, 1.2), (1.6, 1.2), (1.4, 1.3))
    assert detect_overfitting(equal, patience=3) is None, "a flat eval loss has not risen"


def test_rising_eval_with_rising_train_loss_is_not_overfitting() -> None:
    # Both curves going up is divergence (learning rate too high), not overfitting.
    points = history((1.0, 1.0), (1.1, 1.1), (1.3, 1.2), (1.4, 1.3))
    assert detect_overfitting(points, patience=3) is None


@pytest.mark.parametrize("missing", [0, -1])
def test_an_unknown_train_loss_at_the_window_ends_decides_nothing(missing: int) -> None:
    points = history((2.0, 1.0), (1.8, 1.2), (1.6, 1.3), (1.4, 1.4))
    points[missing] = points[missing].model_copy(update={"train_loss": None})
    assert detect_overfitting(points, patience=3) is None


def test_an_earlier_window_counts_after_the_eval_loss_recovers() -> None:
    points = history((2.0, 1.0), (1.8, 1.1), (1.6, 1.2), (1.4, 1.3), (1.2, 1.25), (1.1, 1.2))
    found = detect_overfitting(points, patience=3)
    assert found is not None and (found.first.step, found.last.step) == (100, 400)
