"""The held-out score: greedy answers to eval prompts judged against their references."""

from __future__ import annotations

from pydantic import Field

from kubesft.api.base import StatusModel


class HeldOutScore(StatusModel):
    """Exact-match (and, for JSON answers, format-valid) rate before and after training,
    over the eval prompts answered greedily (`spec.evaluation.samples` of them)."""

    examples: int = Field(ge=0)
    """Eval rows scored."""
    exact_match_before: float
    """Share of answers equal to the reference (whitespace-normalized), 0-1, base model."""
    exact_match_after: float
    """The same after training."""
    format_valid_before: float | None = None
    """When every reference is a JSON object: share of answers that parse as a JSON object
    with the reference's keys, 0-1, base model."""
    format_valid_after: float | None = None
