"""`prepare`: turn an SFTDataset's source into normalized train/eval JSONL and stats.

read → normalize and validate → dedupe → split → write. The output directory only ever
appears complete: files are written to a sibling staging directory that is renamed into
place, and a rejected dataset publishes `errors.json` instead of `stats.json`, so nothing
downstream can mistake a half-written or rejected dataset for a ready one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

from kubesft.api.dataset import DataAudit, DatasetStats, RowError, SFTDatasetSpec, Validation
from kubesft_trainer.audit import audit_examples, enforce_audit, log_audit
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.formats import SOURCE_ROW, RowProblem, Schema, choose_schema, measure
from kubesft_trainer.normalize import normalize_row, unused_turn_keys, used_keys
from kubesft_trainer.sources import SourceRow, read_source

MAX_ERRORS = 20
"""Invalid rows kept in stats.json and errors.json (the status shows the first few)."""
DETECT_ROWS = 100
"""Rows read ahead to detect the format."""
SHOWN_ERRORS = 3
"""Invalid rows named in the one-line failure message."""
MAX_IGNORED = 20
"""Ignored columns listed in the stats (the most frequent), so the status stays small."""


@dataclass(frozen=True)
class Example:
    """A normalized example as written (canonical JSON) and what the stats need of it."""

    line: str
    digest: bytes
    chars: int
    roles: tuple[str, ...]
    row: int = 0
    """1-based row number in its source."""


@dataclass
class Tally:
    """Counts gathered while reading; they become DatasetStats."""

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    audit: DataAudit | None = None
    format: str | None = None
    errors: list[RowError] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    """Rows holding each column (or turn key) kubesft does not use."""

    def stats(self, train: Sequence[Example] = (), evals: Sequence[Example] = ()) -> DatasetStats:
        kept = [*train, *evals]
        return DatasetStats(
            rows=self.rows,
            valid=self.valid,
            invalid=self.invalid,
            duplicates_removed=self.duplicates,
            audit=self.audit,
            train=len(train),
            eval=len(evals),
            format=self.format,
            roles=dict(sorted(Counter(r for ex in kept for r in ex.roles).items())),
            length_histogram=length_histogram(ex.chars for ex in kept),
            ignored_columns={
                name[:80]: count for name, count in sorted(self.ignored.most_common(MAX_IGNORED))
            },
        )


@dataclass(frozen=True)
class Prepared:
    """A successful run: what was written and where."""

    stats: DatasetStats
    fingerprint: str
    errors: list[RowError]
    output: Path


class DatasetInvalid(UserError):
    """The data (not the run) failed; carries what was counted so far for the status."""

    def __init__(self, reason: str, stats: DatasetStats, errors: list[RowError]) -> None:
        super().__init__(f"dataset invalid: {reason}")
        self.stats = stats
        self.errors = errors


def prepare_dataset(
    spec: SFTDatasetSpec,
    output: Path,
    *,
    source_path: Path | None = None,
    eval_source_path: Path | None = None,
) -> Prepared:
    """Prepare `spec`'s data into `output`; raises DatasetInvalid when the data is unusable."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.partial"
    tally = Tally()
    try:
        _fresh_dir(staging)
        train, evals = _load(spec, tally, staging / ".download", source_path, eval_source_path)
        shutil.rmtree(staging / ".download", ignore_errors=True)
        stats = tally.stats(train, evals)
        log_audit(stats.audit)
        fingerprint = write_examples(staging, train, evals)
        _write_json(staging / "stats.json", stats_document(stats, fingerprint, tally.errors))
        _publish(staging, output)
        return Prepared(stats, fingerprint, tally.errors, output)
    except UserError as err:
        failure = DatasetInvalid(str(err), tally.stats(), tally.errors)
        _fresh_dir(staging)
        _write_json(staging / "errors.json", failure_document(failure))
        _publish(staging, output)
        raise failure from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load(
    spec: SFTDatasetSpec,
    tally: Tally,
    workdir: Path,
    source_path: Path | None,
    eval_source_path: Path | None,
) -> tuple[list[Example], list[Example]]:
    """Read, validate, dedupe and split into (train, eval); UserError when a limit breaks."""
    limits, split = spec.validation, spec.split
    rows = read_source(
        spec.source, workdir=workdir, max_bytes=limits.max_bytes, local_path=source_path
    )
    head = list(islice(rows, DETECT_ROWS))
    schema = choose_schema(spec.format, spec.columns, [r.value for r in head if not r.error])
    tally.format = schema.format
    seen: set[bytes] = set()
    examples = _examples(chain(head, rows), schema, tally, seen, limits.dedupe)
    examples, tally.audit = audit_examples(examples, limits)
    enforce_audit(tally.audit)
    if split.eval_source is None:
        _check_limits(limits, tally, len(examples))
        count = eval_size(len(examples), split.eval_fraction, split.max_eval_rows)
        chosen = choose_eval([e.digest for e in examples], count, split.seed)
        train = [e for i, e in enumerate(examples) if i not in chosen]
        return train, [e for i, e in enumerate(examples) if i in chosen]
    label = "spec.split.evalSource"
    eval_rows = read_source(
        split.eval_source,
        workdir=workdir / "eval",
        max_bytes=limits.max_bytes,
        local_path=eval_source_path,
        label=label,
    )
    # Dedupe continues across sources, so no training example is also evaluated on.
    evals = _examples(eval_rows, schema, tally, seen, limits.dedupe, f" (in {label})")
    _check_limits(limits, tally, len(examples))
    chosen = choose_eval([e.digest for e in evals], split.max_eval_rows or len(evals), split.seed)
    return examples, [e for i, e in enumerate(evals) if i in chosen]


def _examples(
    rows: Iterable[SourceRow],
    schema: Schema,
    tally: Tally,
    seen: set[bytes],
    dedupe: bool,
    where: str = "",
) -> list[Example]:
    """Normalize and validate rows, counting invalid ones and dropping duplicates."""
    out = []
    for row in rows:
        tally.rows += 1
        try:
            if row.error:
                raise RowProblem("", row.error)
            example = normalize_row(row.value, schema)
        except RowProblem as problem:
            tally.invalid += 1
            if len(tally.errors) < MAX_ERRORS:
                message = problem.message + where
                tally.errors.append(RowError(row=row.number, field=problem.field, message=message))
            continue
        tally.valid += 1
        tally.ignored.update(ignored_keys(row.value, schema))
        # The digest leaves the row number out: the same example on two rows is a duplicate.
        digest = hashlib.sha256(canonical_json(example).encode()).digest()
        if dedupe and digest in seen:
            tally.duplicates += 1
            continue
        seen.add(digest)
        line = canonical_json({**example, SOURCE_ROW: row.number})
        out.append(Example(line, digest, *measure(example), row=row.number))
    return out


def ignored_keys(row: dict[str, Any], schema: Schema) -> set[str]:
    """Columns of a valid row, and keys of its turns, that carry nothing kubesft uses."""
    ignored = set(row) - used_keys(schema)
    lists = [schema.messages] if schema.shape == "turns" else [schema.prompt[0], schema.completion]
    for name in lists:
        turns = row.get(name)
        if isinstance(turns, list):
            ignored.update(
                f"{name}[].{key}"
                for turn in turns
                if isinstance(turn, dict)
                for key in unused_turn_keys(turn, schema)
            )
    return ignored


def _check_limits(limits: Validation, tally: Tally, usable: int) -> None:
    if tally.invalid > limits.max_invalid_rows:
        shown = "; ".join(describe_row_error(e) for e in tally.errors[:SHOWN_ERRORS])
        more = tally.invalid - min(len(tally.errors), SHOWN_ERRORS)
        rest = f"; and {more} more (see errors.json)" if more > 0 else ""
        raise UserError(
            f"{tally.invalid} invalid rows (allowed {limits.max_invalid_rows} by "
            f"spec.validation.maxInvalidRows): {shown}{rest}"
        )
    if usable < limits.min_examples:
        raise UserError(
            f"{usable} usable examples after validation and dedupe, fewer than "
            f"spec.validation.minExamples ({limits.min_examples})"
        )


def eval_size(total: int, fraction: float, max_eval: int | None) -> int:
    """Examples held out: about `fraction`, at least one when asked, never all of them."""
    size = 0 if fraction <= 0 or total < 2 else min(total - 1, max(1, round(total * fraction)))
    return size if max_eval is None else min(size, max_eval)


def choose_eval(digests: list[bytes], count: int, seed: int) -> set[int]:
    """Indexes of the eval examples: the `count` smallest by a seeded hash of each example.

    Hashing content instead of shuffling positions keeps an example on the same side when
    rows are added or reordered, so a grown dataset does not leak old eval rows into train.
    """
    salt = seed.to_bytes(8, "big")
    order = sorted(range(len(digests)), key=lambda i: hashlib.sha256(salt + digests[i]).digest())
    return set(order[:count])


def canonical_json(example: dict[str, Any]) -> str:
    """One stable JSON text per example: the dedupe key, the line written and hashed."""
    return json.dumps(example, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def length_histogram(lengths: Iterable[int]) -> dict[str, int]:
    """Examples per character-length bucket; a bucket is named by its power-of-two bound."""
    counts = Counter(1 << max(4, (n - 1).bit_length()) for n in lengths)
    return {str(bound): counts[bound] for bound in sorted(counts)}


def write_examples(directory: Path, train: list[Example], evals: list[Example]) -> str:
    """Write train.jsonl and eval.jsonl; returns the sha256 fingerprint of both."""
    digest = hashlib.sha256()
    for name, examples in (("train", train), ("eval", evals)):
        digest.update(f"{name}\n".encode())
        with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for example in examples:
                text = example.line + "\n"
                fh.write(text)
                digest.update(text.encode())
            fh.flush()
            os.fsync(fh.fileno())
    return digest.hexdigest()


def stats_document(stats: DatasetStats, fingerprint: str, errors: list[RowError]) -> dict[str, Any]:
    """stats.json: DatasetStats in camelCase plus the fingerprint and first errors."""
    return {
        **stats.model_dump(by_alias=True, mode="json"),
        "fingerprint": fingerprint,
        "errors": [e.model_dump(by_alias=True) for e in errors],
    }


def failure_document(failure: DatasetInvalid) -> dict[str, Any]:
    """errors.json: why the dataset was rejected, with what was counted before that."""
    return {
        "phase": "Failed",
        "message": str(failure),
        **stats_document(failure.stats, "", failure.errors),
    }


def describe_row_error(error: RowError) -> str:
    where = f"row {error.row} {error.field}" if error.field else f"row {error.row}"
    return f"{where}: {error.message}"


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _publish(staging: Path, output: Path) -> None:
    """Move the finished staging dir to `output`, replacing an earlier result."""
    old = output.parent / f".{output.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    staging.rename(output)
    shutil.rmtree(old, ignore_errors=True)
