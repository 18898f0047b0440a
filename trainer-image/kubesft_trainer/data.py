"""Prepared data into micro-batches: read, tokenize with masking, pack, shuffle, shard.

A *unit* is what one micro-batch slot holds: a packed bin of examples (packing on) or
one example (packing off). Units are packed once; each epoch shuffles them with a
generator seeded by (seed, epoch), so any epoch's order can be rebuilt on resume without
saved state. Consecutive groups of `microBatchSize` units are micro-batches; rank r takes
micro-batches r, r + W, r + 2W, … after the list is padded (by wrapping around) to a
multiple of the world size W, so every rank runs the same number of micro-batches and
the union over ranks of one optimizer step is the same whatever W is.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubesft.api.job import Training
from kubesft_trainer.collate import PackedBatch, PaddedBatch, collate_packed, collate_padded
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.formats import SOURCE_ROW
from kubesft_trainer.masking import (
    EncodedExamples,
    TokenizedExample,
    encode_rendered,
    label_encoded,
    render_examples,
    tokenize_examples,
)
from kubesft_trainer.packing import pack_examples

log = logging.getLogger(__name__)
Batch = PackedBatch | PaddedBatch

TOKENIZE_BATCH = 1000
"""Rows per batched tokenizer call: large enough to spread over cores, small in memory."""
ENCODE_AHEAD = 2
"""Rendered chunks that may wait for the encoder thread (see `_tokenize_chunks`)."""


@dataclass(frozen=True)
class TokenizedSplit:
    """Examples left to train on, with counts of what tokenization cut or removed."""

    examples: list[TokenizedExample]
    rows: int
    truncated: int
    dropped: int
    lengths: list[int] = field(default_factory=list)
    """Every example's token count before truncation, dropped ones included (for preflight)."""
    expanded_rows: int = 0
    """Conversations trained one assistant turn per example (the template re-renders history)."""
    added_examples: int = 0
    """Examples those conversations added beyond one each."""

    @property
    def truncated_fraction(self) -> float:
        return self.truncated / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class DataPosition:
    """Where the next optimizer step starts: epoch and micro-batch index on this rank."""

    epoch: int = 0
    micro_batch: int = 0

    def rescaled(self, old_world_size: int, new_world_size: int) -> DataPosition:
        """The same place in the epoch after the number of ranks changed (approximately)."""
        done = self.micro_batch * old_world_size  # micro-batches all ranks had run
        return DataPosition(self.epoch, done // new_world_size)


@dataclass
class MicroBatchPlan:
    """Units of a split and how they become each rank's micro-batches."""

    units: list[list[int]]
    """Example indices per unit (a packed bin, or one example)."""
    micro_batch_size: int
    world_size: int
    rank: int
    seed: int
    _cached: tuple[int, list[list[int]]] | None = field(default=None, repr=False)

    @property
    def global_micro_batches(self) -> int:
        """Micro-batches per epoch over all ranks, before padding to a multiple of W."""
        return math.ceil(len(self.units) / self.micro_batch_size)

    @property
    def per_rank(self) -> int:
        """Micro-batches each rank runs per epoch."""
        return math.ceil(self.global_micro_batches / self.world_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of `epoch`, each a list of example indices."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._build_epoch(epoch))
        return self._cached[1]

    def _build_epoch(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
        size = self.micro_batch_size
        groups = [order[i : i + size].tolist() for i in range(0, len(order), size)]
        padded = [groups[i % len(groups)] for i in range(self.per_rank * self.world_size)]
        mine = padded[self.rank :: self.world_size]
        return [[index for unit in group for index in self.units[unit]] for group in mine]


def load_split(
    dataset_dir: Path, name: str, tokenizer: Any, training: Training, chat_template: str
) -> tuple[list[dict[str, Any]], TokenizedSplit]:
    """Rows of `<name>.jsonl` and their tokenized examples; an absent eval file is empty."""
    path = Path(dataset_dir) / f"{name}.jsonl"
    if name != "train" and not path.exists():
        return [], TokenizedSplit([], 0, 0, 0)
    rows = read_jsonl(path)
    return rows, tokenize_split(rows, tokenizer, training, chat_template, path.name)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a prepared JSONL file; a broken line is a UserError naming file and line."""
    if not path.exists():
        raise UserError(f"{path} does not exist; the SFTDataset's prepared data is missing")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path.name} line {number} is not valid JSON: {err}") from None
            if not isinstance(row, dict):
                raise UserError(f"{path.name} line {number} must be a JSON object")
            rows.append(row)
    return rows


def tokenize_split(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    training: Training,
    chat_template: str,
    name: str,
) -> TokenizedSplit:
    """Tokenize and mask every row; examples with nothing left to grade are dropped.

    Rows go to the tokenizer `TOKENIZE_BATCH` at a time (one batched call encodes them in
    parallel); a chunk with a bad row is redone row by row to name the row: its number in
    the dataset's source when the prepared row keeps it (`row`), else its line in `name`.
    """
    options = _masking_options(training, chat_template)
    kept, lengths, truncated, dropped, expanded, added = [], [], 0, 0, 0, 0
    with _full_collections_paused():
        per_chunk = _tokenize_chunks(rows, tokenizer, options, name)
    for per_row in per_chunk:
        for examples in per_row:
            if len(examples) > 1:
                expanded += 1
                added += len(examples) - 1
            for example in examples:
                lengths.append(example.untruncated_length)
                truncated += example.truncated
                if example.dropped:
                    dropped += 1
                else:
                    kept.append(example)
    if expanded:
        log.info(
            "%s: %d of %d conversations are trained one assistant turn per example (%d "
            "examples added): the chat template renders earlier turns differently once later "
            "turns exist, so each turn keeps the history it has at inference",
            name,
            expanded,
            len(rows),
            added,
        )
    return TokenizedSplit(
        kept,
        len(lengths),
        truncated,
        dropped,
        lengths,
        expanded_rows=expanded,
        added_examples=added,
    )


def _tokenize_chunks(
    rows: Sequence[dict[str, Any]], tokenizer: Any, options: dict[str, Any], name: str
) -> list[list[list[TokenizedExample]]]:
    """`tokenize_examples` of each chunk of `TOKENIZE_BATCH` rows, in order.

    This thread renders chunk k + 1 (and labels chunk k) while a second one encodes chunk
    k: rendering and labelling are Python, which holds the interpreter lock, and the
    batched Rust tokenizer call releases it, so the two run on separate cores instead of
    one after the other. At most `ENCODE_AHEAD` rendered chunks wait for the encoder, so
    memory stays bounded.
    """
    done: list[list[list[TokenizedExample]]] = []
    pending: deque[tuple[int, Future[EncodedExamples]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubesft-encode") as encoder:
        for start in range(0, len(rows), TOKENIZE_BATCH):
            try:
                rendered = render_examples(
                    rows[start : start + TOKENIZE_BATCH], tokenizer, **options
                )
            except ValueError:
                _raise_for_first_bad_row(rows, start, pending, tokenizer, options, name)
                raise
            pending.append((start, encoder.submit(encode_rendered, rendered, tokenizer)))
            # Young objects only: what the chunk left behind, never the whole heap (see below).
            gc.collect(1)
            while len(pending) > ENCODE_AHEAD or (pending and start + TOKENIZE_BATCH >= len(rows)):
                chunk_start, future = pending.popleft()
                try:
                    done.append(label_encoded(future.result()))
                except ValueError:
                    _raise_for_first_bad_row(rows, chunk_start, pending, tokenizer, options, name)
                    raise
    return done


@contextmanager
def _full_collections_paused() -> Iterator[None]:
    """Python's automatic garbage collection paused while a split is tokenized.

    Tokenizing builds a few long-lived lists per example and no reference cycles, yet
    CPython's automatic collector walks every object the process holds (torch,
    transformers, the rows, all examples so far) each time enough new objects survive:
    about a tenth of preparation time on ChatML. `_tokenize_chunks` collects the young
    generations itself, so garbage a chat template might leave in cycles stays bounded.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _masking_options(training: Training, chat_template: str) -> dict[str, Any]:
    return {
        "loss_on": training.loss_on,
        "max_seq_length": training.max_seq_length,
        "chat_template": chat_template,
    }


def _raise_for_first_bad_row(
    rows: Sequence[dict[str, Any]],
    start: int,
    pending: Iterable[tuple[int, Future[Any]]],
    tokenizer: Any,
    options: dict[str, Any],
    name: str,
) -> None:
    """UserError naming the first bad row of the chunk at `start`, once the encoder is idle
    (one tokenizer is not used from two threads)."""
    futures = [future for _, future in pending]
    for future in futures:
        future.cancel()
    wait(futures)
    for number, row in enumerate(rows[start : start + TOKENIZE_BATCH], start=start + 1):
        try:
            tokenize_examples([row], tokenizer, **options)
        except ValueError as err:
            source = row.get(SOURCE_ROW)
            where = f"row {source}" if isinstance(source, int) else f"{name} line {number}"
            raise UserError(f"{where}: {err}") from None


def require_examples(split: TokenizedSplit, training: Training, *, where: str = "") -> None:
    """A split that lost every example to truncation cannot train; say what to change.

    `where` names the dataset in the message (a member of a mixture: `SFTDataset 'chat'`).
    """
    if split.rows and not split.examples:
        prefix = f"{where}: " if where else ""
        raise UserError(
            f"{prefix}all {split.rows} training examples have no graded token left after "
            f"truncation to spec.training.maxSeqLength={training.max_seq_length} with "
            f"lossOn={training.loss_on}; raise maxSeqLength or shorten the prompts"
        )


def build_units(examples: Sequence[TokenizedExample], training: Training) -> list[list[int]]:
    """Packed bins (best-fit decreasing) or one example per unit without packing."""
    if not training.packing:
        return [[index] for index in range(len(examples))]
    return pack_examples([len(e) for e in examples], training.max_seq_length)


def tokens_per_micro_batch(
    examples: Sequence[TokenizedExample], units: Sequence[Sequence[int]], micro_batch_size: int
) -> float:
    """Average real tokens in a micro-batch, for sizing accumulation from globalBatchTokens."""
    if not units:
        return 0.0
    return sum(len(e) for e in examples) / len(units) * micro_batch_size


def collate(
    examples: Sequence[TokenizedExample], indices: Sequence[int], packing: bool, pad_id: int
) -> Batch:
    """One micro-batch: a packed row, or padded rows when packing is off."""
    chosen = [examples[i] for i in indices]
    return collate_packed(chosen) if packing else collate_padded(chosen, pad_id)


def step_micro_batches(
    plan: MicroBatchPlan, position: DataPosition, accumulation: int
) -> tuple[list[list[int]], DataPosition]:
    """Micro-batches of the optimizer step starting at `position`, and the next position.

    An epoch's last step may hold fewer micro-batches; the loss stays exact because it is
    divided by the label tokens the step actually has.
    """
    if position.micro_batch >= plan.per_rank:  # a rescaled position past the epoch's end
        position = DataPosition(position.epoch + 1, 0)
    epoch = plan.epoch(position.epoch)
    start = position.micro_batch
    chosen = epoch[start : start + accumulation]
    end = start + len(chosen)
    following = (
        DataPosition(position.epoch + 1, 0)
        if end >= len(epoch)
        else (DataPosition(position.epoch, end))
    )
    return chosen, following


def eval_batches(
    split: TokenizedSplit,
    training: Training,
    pad_id: int,
    *,
    rank: int,
    world_size: int,
    max_examples: int | None,
) -> Iterator[Batch]:
    """This rank's share of the eval split in fixed order (results are summed over ranks)."""
    examples = split.examples[:max_examples] if max_examples else split.examples
    units = build_units(examples, training)
    size = training.micro_batch_size
    groups = [units[i : i + size] for i in range(0, len(units), size)]
    for group in groups[rank::world_size]:
        yield collate(examples, [i for unit in group for i in unit], training.packing, pad_id)
