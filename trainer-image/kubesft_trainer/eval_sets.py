"""Evaluation over all ranks, per dataset: each member's eval split and the retention set.

Each rank scores its share of every set (`data.eval_batches`); the (loss sum, correct,
graded tokens) of all sets are all-reduced in one call. The overall eval loss is the
token-weighted loss over every member's eval examples, the sums added up: exactly the
loss of one eval split holding them all, so a single dataset scores as it always did.
The retention set is scored the same way but never enters the overall loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from kubesft.api.job import SFTJobSpec
from kubesft.api.retention import RetentionStatus, forgetting, relative_change
from kubesft_trainer import data, evaluate, sharding
from kubesft_trainer.collate import collate_packed
from kubesft_trainer.data import Batch
from kubesft_trainer.evaluate import EvalResult
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample
from kubesft_trainer.members import NamedSplit
from kubesft_trainer.results import rounded

Sums = tuple[float, int, int]
"""(sum of token losses, correctly predicted tokens, graded tokens)."""


@dataclass(frozen=True)
class EvalSet:
    """A named eval set; `batches()` gives this rank's share afresh on every call."""

    name: str
    batches: Callable[[], Iterable[Batch]]


def build_eval_set(named: NamedSplit, spec: SFTJobSpec, pad_id: int, accelerator: Any) -> EvalSet:
    """This rank's batches of `named`, at most `spec.evaluation.maxExamples` examples."""
    rank, world_size = accelerator.process_index, accelerator.num_processes

    def batches() -> Iterable[Batch]:
        return data.eval_batches(
            named.split,
            spec.training,
            pad_id,
            rank=rank,
            world_size=world_size,
            max_examples=spec.evaluation.max_examples,
        )

    return EvalSet(named.name, batches)


def score_sets(
    accelerator: Any,
    model: Any,
    sets: Sequence[EvalSet],
    attn_implementation: str,
    pad_id: int,
) -> list[Sums]:
    """Each set's sums over all ranks (every rank must call this with the same sets)."""
    local = []
    for eval_set in sets:
        batches: Iterable[Batch] = eval_set.batches()
        if sharding.is_sharded(model):  # every forward is collective: equal counts
            batches = _padded_to_most(accelerator, list(batches), pad_id)
        local.append(evaluate.loss_sums(model, batches, attn_implementation))
    sums = torch.tensor(local, dtype=torch.float64, device=accelerator.device)
    reduced = accelerator.reduce(sums, reduction="sum").reshape(len(sets), 3).tolist()
    return [(loss, int(correct), int(count)) for loss, correct, count in reduced]


def overall_result(names: Sequence[str], sums: Sequence[Sums], *, by_dataset: bool) -> EvalResult:
    """Token-weighted metrics over all sets; with `by_dataset`, each set's own as well."""
    loss, correct, count = (sum(column) for column in zip(*sums, strict=True))
    result = EvalResult.from_sums(loss, int(correct), int(count))
    if not by_dataset:
        return result
    each = {name: EvalResult.from_sums(*s) for name, s in zip(names, sums, strict=True)}
    return replace(result, by_dataset=each)


def retention_status(
    name: str, result: EvalResult, *, step: int, loss_before: float | None
) -> RetentionStatus:
    """`status.retention` after scoring the retention set at `step` (0: before training)."""
    before = result.loss if step == 0 else loss_before
    return RetentionStatus(
        name=name,
        loss_before=rounded(before),
        loss=rounded(result.loss),
        step=step,
        relative_change=(
            rounded(relative_change(before, result.loss)) if before is not None else None
        ),
        tokens=result.tokens,
    )


def describe_retention(status: RetentionStatus) -> str:
    """One log line: the retention loss at a step and its change since before training."""
    where = f"SFTDataset {status.name!r}"
    if not status.step:
        return f"retention loss on {where} before training: {status.loss} ({status.tokens} tokens)"
    change = f" ({status.relative_change:+.1%})" if status.relative_change is not None else ""
    return (
        f"step {status.step}: retention loss on {where} {status.loss}{change}, "
        f"{status.loss_before} before training"
    )


def forgetting_stop(spec: SFTJobSpec, status: RetentionStatus | None) -> str | None:
    """The reason to stop early when `retention.earlyStop` is on and the model forgets."""
    retention = spec.evaluation.retention
    if retention is None or not retention.early_stop:
        return None
    message = forgetting(status, retention.threshold)
    return f"stopped early on forgetting: {message}" if message else None


def _padded_to_most(acc: Any, batches: list[Batch], pad_id: int) -> list[Batch]:
    """This rank's batches plus one-token batches with nothing graded, to the most of any rank."""
    count = torch.tensor([len(batches)], device=acc.device)
    torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
    most = int(count)
    filler = collate_packed([TokenizedExample([pad_id], [IGNORE_INDEX])])
    return batches + [filler] * (most - len(batches))
