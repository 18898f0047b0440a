"""The forgetting signal: loss on general data the model is not trained on.

Catastrophic forgetting shows as a rising loss on text the base model handled well before
fine-tuning. `spec.evaluation.retention` names an SFTDataset (general text or chat) that is
never trained on; the trainer scores it before training and at every evaluation
(`status.retention`), and the operator sets the `Forgetting` condition from it with the
rule here, which the trainer's early stopping (`retention.earlyStop`) applies too.
"""

from __future__ import annotations

from pydantic import Field

from kubesft.api.base import APIModel, StatusModel
from kubesft.api.formats import ObjectName

ADVICE = (
    "the model is losing what it knew before fine-tuning: lower spec.training.learningRate, "
    "use method lora, or replay general text (a format: text member of spec.datasets with a "
    "weight of 5-10%)"
)


class Retention(APIModel):
    """Measure forgetting on an SFTDataset that is not trained on."""

    name: ObjectName
    """An SFTDataset in the same namespace (its train and eval rows are all scored); it must
    not be a member of the training data."""
    threshold: float = Field(default=0.1, gt=0, le=100)
    """Relative rise of the retention loss over its value before training that sets the
    Forgetting condition: 0.1 is +10%."""
    early_stop: bool = False
    """Also stop training (reason EarlyStopped) at the first evaluation past the threshold."""


class RetentionStatus(StatusModel):
    """Retention loss before training and at the latest evaluation."""

    name: str
    loss_before: float | None = None
    loss: float | None = None
    """At the latest evaluation."""
    step: int | None = None
    """Step of the latest evaluation."""
    relative_change: float | None = None
    """(loss - lossBefore) / lossBefore: 0.12 is 12% worse than the base model."""
    tokens: int = 0
    """Graded tokens scored per evaluation."""


def relative_change(before: float, latest: float) -> float:
    """(latest - before) / before; 0 when `before` is 0 (nothing to lose)."""
    return (latest - before) / before if before > 0 else 0.0


def forgetting(retention: RetentionStatus | None, threshold: float) -> str | None:
    """A message with the numbers when the retention loss rose past `threshold` (relative),
    else None (also while nothing was measured after training started)."""
    r = retention
    if r is None or r.loss_before is None or r.loss is None or not r.step:
        return None
    change = relative_change(r.loss_before, r.loss)
    if change <= threshold:
        return None
    return (
        f"retention loss on SFTDataset {r.name!r} rose {change:.1%} "
        f"({r.loss_before:.4g} before training -> {r.loss:.4g} at step {r.step}), past "
        f"spec.evaluation.retention.threshold {threshold:g}: {ADVICE}"
    )
