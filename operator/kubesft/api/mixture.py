"""Dataset mixtures: several SFTDatasets trained in one job, each with a weight.

Instruction tuning trains on many task categories at once, each with a mixing weight
(FLAN's examples-proportional mixing, Chung et al. 2022); replay of general text against
catastrophic forgetting is one more member, a `format: text` SFTDataset with a small
weight (5-10% is the usual advice). The trainer draws the mixture deterministically from
`spec.training.seed` (`kubesft_trainer.mixture`) and reports the plan it drew as
`status.mixture`; each member's eval split is scored on its own (`metrics.evalByDataset`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubesft.api.base import APIModel, StatusModel
from kubesft.api.formats import ObjectName

MAX_MEMBERS = 16
"""Members of one mixture (a bound that keeps the CEL cost of the uniqueness rule small)."""

MixBy = Literal["examples", "tokens"]
"""What a mixture's weights share out: examples (FLAN-style examples-proportional mixing)
or tokens (the share of compute, the usual reading of "5% replay" of long text rows)."""


class MixtureMember(APIModel):
    """One SFTDataset of `spec.datasets` and its share of the mixture."""

    name: ObjectName
    """An SFTDataset in the same namespace; the job waits until every member is Ready."""
    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    """Relative share (normalized over the members): 0.7, 0.25, 0.05 and 70, 25, 5 mix
    alike. A member whose share asks for more than it has is repeated; one asking for less
    is subsampled (`status.mixture` reports both)."""


class MixtureEntry(StatusModel):
    """The plan the trainer drew for one member, per epoch."""

    name: str
    weight: float
    """Normalized share (the members' weights sum to 1)."""
    examples: int
    """Training examples the member has (after tokenization and truncation)."""
    examples_per_epoch: int
    """Examples of the member in one epoch of the mixture."""
    tokens_per_epoch: int
    """Their tokens (prompt and answer)."""
    repeats: float
    """examplesPerEpoch / examples: above 1 the member is repeated (an up-weighted small
    set), below 1 subsampled (a down-weighted large one)."""


class DatasetEval(StatusModel):
    """Eval loss on one member's eval split."""

    name: str
    eval_loss: float
    tokens: int = 0
    """Graded tokens scored (the overall eval loss weighs members by these)."""
