"""The datasets of a run: each member's splits tokenized, mixed into one training epoch,
and the retention set (`spec.evaluation.retention`), scored but never trained on.

Every member is tokenized on its own with the run's template and `lossOn`, so a
`format: text` member (graded whole, whatever `lossOn` says: `masking`) mixes with chat
members. The training epoch is the mixture `mixture.draw_mixture` draws; the eval splits
stay apart, one per member, so each is scored separately (`eval_sets`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesft.api.job import SFTJobSpec, Training
from kubesft.api.mixture import MixtureEntry
from kubesft.api.runtime import TrainerDataset
from kubesft_trainer import data
from kubesft_trainer.data import TokenizedSplit
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.mixture import MemberExamples, describe_plan, draw_mixture


@dataclass(frozen=True)
class Member:
    """One SFTDataset of the run, tokenized."""

    name: str
    weight: float
    train: TokenizedSplit
    eval: TokenizedSplit
    eval_rows: list[dict[str, Any]]


@dataclass(frozen=True)
class NamedSplit:
    """A tokenized split and the SFTDataset it comes from."""

    name: str
    split: TokenizedSplit


@dataclass(frozen=True)
class RunData:
    """What the run trains and evaluates on."""

    train: TokenizedSplit
    """One epoch of the mixture (the single dataset's train split as it is)."""
    evals: list[NamedSplit]
    """Each member's eval split, members without one left out."""
    eval_rows: list[dict[str, Any]]
    """Eval rows for the sample prompts, taken in turn from each member."""
    mixture: list[MixtureEntry] | None
    """The plan drawn for spec.datasets; None for spec.dataset."""


def load_run_data(
    spec: SFTJobSpec, datasets: Sequence[TrainerDataset], tokenizer: Any, chat_template: str
) -> RunData:
    """Tokenize every member's train and eval split and draw the mixture.

    Raises UserError naming the SFTDataset whose training split has nothing to train on.
    """
    members = [load_member(d, tokenizer, spec, chat_template) for d in datasets]
    train, plan = mix_members(members, spec)
    return RunData(
        train=train,
        evals=[NamedSplit(m.name, m.eval) for m in members if m.eval.examples],
        eval_rows=interleave([m.eval_rows for m in members]),
        mixture=plan if spec.datasets is not None else None,
    )


def load_member(
    dataset: TrainerDataset, tokenizer: Any, spec: SFTJobSpec, chat_template: str
) -> Member:
    """One member's train and eval splits, tokenized."""
    training, folder = spec.training, Path(dataset.dir)
    _, train = data.load_split(folder, "train", tokenizer, training, chat_template)
    where = f"SFTDataset {dataset.name!r}"
    if not train.rows:
        raise UserError(f"{where} has no training examples ({folder / 'train.jsonl'} is empty)")
    data.require_examples(train, training, where=where)
    eval_rows, evals = data.load_split(folder, "eval", tokenizer, training, chat_template)
    return Member(dataset.name, dataset.weight, train, evals, eval_rows)


def mix_members(
    members: Sequence[Member], spec: SFTJobSpec
) -> tuple[TokenizedSplit, list[MixtureEntry]]:
    """One epoch of the mixture as a split, and the plan. A single member is its own
    split, untouched (the draw of one member is every example once, in order)."""
    training = spec.training
    drawn = draw_mixture(
        [MemberExamples(m.name, m.weight, [len(e) for e in m.train.examples]) for m in members],
        training.mix_by,
        training.seed,
    )
    if len(members) == 1:
        return members[0].train, drawn.plan
    examples = [
        member.train.examples[i]
        for member, chosen in zip(members, drawn.indices, strict=True)
        for i in chosen
    ]
    dropped = sum(m.train.dropped for m in members)
    mixed = TokenizedSplit(
        examples,
        rows=len(examples) + dropped,
        truncated=sum(e.truncated for e in examples),
        dropped=dropped,
        lengths=[e.untruncated_length for e in examples],
        expanded_rows=sum(m.train.expanded_rows for m in members),
        added_examples=sum(m.train.added_examples for m in members),
    )
    return mixed, drawn.plan


def load_retention(
    spec: SFTJobSpec, dataset: TrainerDataset, tokenizer: Any, chat_template: str
) -> NamedSplit:
    """All rows (train, then eval) of the retention SFTDataset, tokenized like training data
    (text graded whole, chat per lossOn), the first `spec.evaluation.maxExamples` kept.

    Raises UserError when no row has a graded token left.
    """
    training, folder = spec.training, Path(dataset.dir)
    rows = data.read_jsonl(folder / "train.jsonl")
    eval_path = folder / "eval.jsonl"
    rows += data.read_jsonl(eval_path) if eval_path.exists() else []
    split = data.tokenize_split(rows, tokenizer, training, chat_template, dataset.name)
    cap = spec.evaluation.max_examples
    if cap is not None and len(split.examples) > cap:
        split = TokenizedSplit(split.examples[:cap], split.rows, split.truncated, split.dropped)
    if not split.examples:
        raise UserError(
            f"spec.evaluation.retention: SFTDataset {dataset.name!r} has no example with a "
            f"graded token after truncation to spec.training.maxSeqLength="
            f"{training.max_seq_length} (lossOn={training.loss_on}); name another dataset "
            "or raise maxSeqLength"
        )
    return NamedSplit(dataset.name, split)


def interleave(groups: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Items taken in turn from each group (a, b, a, b, a, ...) until all are used."""
    rounds = itertools.zip_longest(*groups)
    return [item for items in rounds for item in items if item is not None]


def describe_run_data(
    run_data: RunData, retention: NamedSplit | None, training: Training
) -> list[str]:
    """Log lines for the mixture plan and the retention set (none for a single dataset)."""
    lines = []
    if run_data.mixture is not None:
        lines.append(describe_plan(run_data.mixture, training.mix_by, training.seed))
    if retention is not None:
        lines.append(
            f"retention: {len(retention.split.examples)} examples of SFTDataset "
            f"{retention.name!r}, scored before training and at every evaluation"
        )
    return lines
