"""Draw a weighted mixture of datasets: which training examples one epoch holds.

`spec.datasets` gives each member SFTDataset a weight; normalized, the weights share out
one epoch of the mixture, whose size is that of all members together (N examples, or T
tokens), so an epoch costs about what one pass over all the data would:

- `mixBy: examples` (FLAN's examples-proportional mixing, Chung et al. 2022; Raffel et al.
  2020 for T5): member m gets `round(w_m * N)` examples per epoch;
- `mixBy: tokens`: member m gets about `w_m * T` tokens per epoch, prompts included. Tokens
  are the share of compute, and the usual reading of "5% replay" when the replayed text
  rows are much longer than the chat examples.

A member's share of k times its own size is `floor(k)` full copies plus a random subset for
the fraction: an up-weighted small member is repeated, a down-weighted large one
subsampled, and every member keeps at least one example. The subset is drawn once per run
from (`spec.training.seed`, member name), not per epoch: the mixed examples are packed into
units once, and `data.MicroBatchPlan` reshuffles those units every epoch from (seed,
epoch), so a run resumed mid-epoch rebuilds the same order without saved state. The price
is that a subsampled member shows the same subset in every epoch.

A single dataset is a mixture of one with weight 1: one full copy of every example, in
order, so it trains exactly as it did before mixtures existed.

Pure: no torch, no tokenizer; the draw depends only on its arguments.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kubesft.api.mixture import MixBy, MixtureEntry


@dataclass(frozen=True)
class MemberExamples:
    """One member as the draw sees it: its weight and its training examples' lengths."""

    name: str
    weight: float
    """As given in spec.datasets (> 0, not normalized)."""
    lengths: Sequence[int]
    """Tokens of each training example (after truncation), in the order of its split."""


@dataclass(frozen=True)
class MixtureDraw:
    """The examples of one epoch of the mixture, per member, and the plan they make."""

    indices: list[list[int]]
    """Per member (in the order given), indices into its examples, ascending; an index
    appears once per copy (a repeated member has each index two or more times)."""
    plan: list[MixtureEntry]


def draw_mixture(members: Sequence[MemberExamples], mix_by: MixBy, seed: int) -> MixtureDraw:
    """Draw each member's examples for one epoch (see the module docstring for the rule).

    Raises ValueError when there are no members, a weight is not positive or a member has
    no examples (the caller names the SFTDataset before that can happen).
    """
    if not members:
        raise ValueError("a mixture needs at least one member")
    for member in members:
        if member.weight <= 0 or not math.isfinite(member.weight):
            raise ValueError(f"member {member.name!r}: weight must be > 0 (got {member.weight})")
        if not member.lengths:
            raise ValueError(f"member {member.name!r} has no training examples")
    total_weight = sum(m.weight for m in members)
    shares = [m.weight / total_weight for m in members]
    if mix_by == "tokens":
        total = sum(sum(m.lengths) for m in members)
        indices = [
            _by_tokens(m, share * total, _member_rng(seed, m.name))
            for m, share in zip(members, shares, strict=True)
        ]
    else:
        total = sum(len(m.lengths) for m in members)
        indices = [
            _by_examples(m, round(share * total), _member_rng(seed, m.name))
            for m, share in zip(members, shares, strict=True)
        ]
    plan = [
        MixtureEntry(
            name=m.name,
            weight=round(share, 6),
            examples=len(m.lengths),
            examples_per_epoch=len(chosen),
            tokens_per_epoch=sum(m.lengths[i] for i in chosen),
            repeats=round(len(chosen) / len(m.lengths), 4),
        )
        for m, share, chosen in zip(members, shares, indices, strict=True)
    ]
    return MixtureDraw(indices, plan)


def describe_plan(plan: Sequence[MixtureEntry], mix_by: MixBy, seed: int) -> str:
    """The plan as log lines: one per member, with what was repeated or subsampled."""
    lines = [f"mixture of {len(plan)} datasets by {mix_by} (seed {seed}), per epoch:"]
    for entry in plan:
        if entry.repeats > 1:
            how = f"repeated x{entry.repeats:g}"
        elif entry.repeats < 1:
            how = f"subsampled to {entry.repeats:.1%}"
        else:
            how = "each example once"
        lines.append(
            f"  {entry.name}: weight {entry.weight:.3g}, {entry.examples_per_epoch} examples "
            f"of {entry.examples} ({how}), {entry.tokens_per_epoch} tokens"
        )
    return "\n".join(lines)


def _by_examples(member: MemberExamples, wanted: int, rng: np.random.Generator) -> list[int]:
    """`wanted` examples (at least 1): full copies, then a seeded subset without repeats."""
    count = len(member.lengths)
    wanted = max(1, wanted)
    copies, rest = divmod(wanted, count)
    subset = rng.permutation(count)[:rest].tolist() if rest else []
    return sorted([*range(count)] * copies + subset)


def _by_tokens(member: MemberExamples, wanted: float, rng: np.random.Generator) -> list[int]:
    """About `wanted` tokens: full copies, then the prefix of a seeded permutation whose
    tokens come nearest to the rest (at least one example in all)."""
    own = sum(member.lengths)
    copies = int(wanted // own)
    rest = wanted - copies * own
    order = rng.permutation(len(member.lengths)).tolist()
    cumulative = np.cumsum([0, *(member.lengths[i] for i in order)])
    take = int(np.argmin(np.abs(cumulative - rest)))  # 0..n examples of the permutation
    if copies == 0 and take == 0:
        take = 1
    return sorted([*range(len(member.lengths))] * copies + order[:take])


def _member_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, member): a member's draw does not change when others do."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, key])
