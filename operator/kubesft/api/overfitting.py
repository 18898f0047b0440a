"""The overfitting rule: eval loss rising for N consecutive evaluations while train loss fell.

"If validation loss starts climbing while training loss drops, stop" is the usual reading
of the two curves; this is it made exact, over `metrics.evalHistory`. Kept in the API
package beside the history it reads, so the operator (the `Overfitting` condition) and the
trainer (should early stopping ever use it) apply one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from kubesft.api.job_status import EvalPoint

ADVICE = (
    "the model is fitting the training data at the expense of held-out data: keep the best "
    "checkpoint (spec.checkpoints.keepBest), stop earlier (spec.training.earlyStopping), or "
    "lower spec.training.learningRate or epochs"
)


@dataclass(frozen=True)
class Overfitting:
    """The window the rule found: its first and last evaluation."""

    first: EvalPoint
    last: EvalPoint
    evaluations: int
    """Consecutive evaluations whose eval loss rose (the window holds one more)."""

    def message(self) -> str:
        """One line with the numbers, and what to do."""
        a, b = self.first, self.last
        return (
            f"eval loss rose for {self.evaluations} consecutive evaluations "
            f"({a.eval_loss:.4g} at step {a.step} -> {b.eval_loss:.4g} at step {b.step}) "
            f"while train loss fell ({a.train_loss:.4g} -> {b.train_loss:.4g}): {ADVICE}"
        )


def detect_overfitting(history: Sequence[EvalPoint], patience: int) -> Overfitting | None:
    """The latest window of `history` (oldest first) that shows overfitting, or None.

    A window is `patience + 1` consecutive evaluations where each has a higher eval loss
    than the one before it and the train loss at the last is lower than at the first (the
    train losses are means over the steps between evaluations, so one noisy step cannot
    decide). A window with an unknown train loss at either end shows nothing. Windows
    before the latest count too: a run whose eval loss recovers later still overfit, and
    its best checkpoint lies before the window.
    """
    for end in range(len(history) - 1, patience - 1, -1):
        window = history[end - patience : end + 1]
        first, last = window[0], window[-1]
        if first.train_loss is None or last.train_loss is None:
            continue
        rising = all(b.eval_loss > a.eval_loss for a, b in pairwise(window))
        if rising and last.train_loss < first.train_loss:
            return Overfitting(first, last, patience)
    return None
