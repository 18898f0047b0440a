"""Data preparation of a past revision against the working tree, A/B in one process.

`data.tokenize_split` (render + mask + tokenize + truncate, what `data_prep.py` times for
kubesft) of the `kubesft_trainer` package as of `--before` (copied from git and imported
beside the current one) and of the working tree, plus the working tree with its chunks run
one after the other on one thread (`serial`: what the encoder thread adds), on the same
synthetic conversations (`conversations.py`) and tokenizer. Each chunk runs every side back
to back, in rotating order, after an untimed full garbage collection; outputs must be
identical (ids, labels, flags) or the script fails. Reported per side: rows per second of
wall clock and per CPU-second, and the median over chunks of the after/before wall ratio
(each chunk's sides saw the same machine load). CPU seconds are the number to trust on a
busy machine; wall clock needs free cores. Results go to
`bench/results/prep_before_after.json`.

    .venv/bin/python bench/prep_before_after.py [--before REV] [--conversations 20000]
"""

from __future__ import annotations

import gc
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")]

from bench.bench_cli import bench_main  # noqa: E402
from bench.conversations import make_conversations, write_jsonl  # noqa: E402
from bench.machine import machine_info  # noqa: E402

RESULTS = REPO / "bench" / "results"
PACKAGE = "kubesft_trainer"


@dataclass(frozen=True)
class Settings:
    before: str = "4ffbfc0"
    """The last commit before the faster renderer, span-edge offsets and encoder thread."""
    conversations: int = 20_000
    chunk: int = 5_000
    """Rows per `tokenize_split` call, as in `data_prep.py` (several tokenizer batches each)."""
    template: str = "chatml"
    max_seq_length: int = 1024
    seed: int = 7


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        __doc__ or "",
        Settings,
        benchmark,
        results=RESULTS,
        work_help="folder for the old package and the tokenizer corpus",
        prefix="kubesft-bench-prep-ab-",
        argv=argv,
    )


def old_package(work: Path, revision: str) -> Any:
    """`kubesft_trainer.data` of `revision`, importable as `kubesft_trainer_before.data`."""
    archive = subprocess.run(
        ["git", "archive", revision, f"trainer-image/{PACKAGE}"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    target = work / f"{PACKAGE}_before"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            source = tar.extractfile(member)
            assert source is not None
            text = source.read().decode()
            for prefix in ("from ", "import "):
                text = text.replace(f"{prefix}{PACKAGE}.", f"{prefix}{PACKAGE}_before.")
                text = text.replace(f"{prefix}{PACKAGE} ", f"{prefix}{PACKAGE}_before ")
            path = target / Path(member.name).relative_to(f"trainer-image/{PACKAGE}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    sys.path.insert(0, str(work))
    return importlib.import_module(f"{PACKAGE}_before.data")


def serial_split(data: Any) -> Callable[..., Any]:
    """The working tree's `tokenize_split` with each chunk tokenized on this thread."""

    def chunks(rows: Any, tokenizer: Any, options: Any, name: str) -> list[Any]:
        out = []
        for start in range(0, len(rows), data.TOKENIZE_BATCH):
            chunk = rows[start : start + data.TOKENIZE_BATCH]
            out.append(data.tokenize_examples(chunk, tokenizer, **options))
            gc.collect(1)
        return out

    def split(*args: Any) -> Any:
        threaded, data._tokenize_chunks = data._tokenize_chunks, chunks
        try:
            return data.tokenize_split(*args)
        finally:
            data._tokenize_chunks = threaded

    return split


def benchmark(work: Path, settings: Settings, results: Path) -> str:
    from kubesft.api.job import Training
    from kubesft_trainer import data
    from kubesft_trainer.chat_template import resolve_chat_template
    from kubesft_trainer.tiny import build_tokenizer, corpus_texts

    before = old_package(work, settings.before)
    rows = make_conversations(settings.conversations, seed=settings.seed)
    corpus = write_jsonl(work / "corpus.jsonl", rows[:2000])
    tokenizer = build_tokenizer(corpus_texts([corpus]), vocab_size=4096)
    template = resolve_chat_template(settings.template, tokenizer)
    training = Training.model_validate(
        {"maxSeqLength": settings.max_seq_length, "lossOn": "assistant", "packing": True}
    )
    sides: dict[str, Callable[..., Any]] = {
        "before": before.tokenize_split,
        "after": data.tokenize_split,
        "serial": serial_split(data),
    }
    for split in sides.values():
        split(rows[:200], tokenizer, training, template, "warm-up")
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu = {name: 0.0 for name in sides}
    outputs: dict[str, list[tuple[Any, ...]]] = {name: [] for name in sides}
    names = list(sides)
    for number, start in enumerate(range(0, len(rows), settings.chunk)):
        part = rows[start : start + settings.chunk]
        for name in names[number % 3 :] + names[: number % 3]:
            gc.collect()
            started, started_cpu = time.perf_counter(), time.process_time()
            split = sides[name](part, tokenizer, training, template, "ab")
            wall[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - started_cpu
            outputs[name].extend(
                (e.input_ids, e.labels, e.truncated, e.dropped) for e in split.examples
            )
        print(f"chunk {number + 1}", flush=True)
    if not outputs["before"] == outputs["after"] == outputs["serial"]:
        raise SystemExit("outputs differ between revisions; a speed-up must not change a label")
    return report(settings, rows, wall, cpu, len(outputs["after"]), results)


def report(
    settings: Settings,
    rows: Sequence[Any],
    wall: dict[str, list[float]],
    cpu: dict[str, float],
    examples: int,
    results: Path,
) -> str:
    n = len(rows)
    sides = {
        name: {
            "rowsPerSecond": round(n / sum(wall[name]), 1),
            "rowsPerCpuSecond": round(n / cpu[name], 1),
            "wallSeconds": round(sum(wall[name]), 2),
            "cpuSeconds": round(cpu[name], 2),
        }
        for name in wall
    }

    def median_ratio(name: str) -> float:
        pairs = zip(wall["before"], wall[name], strict=True)
        return round(statistics.median(b / a for b, a in pairs), 3)

    cpu_speedup = cpu["before"] / cpu["after"]
    record = {
        "benchmark": "prep_before_after",
        "machine": machine_info(),
        "settings": asdict(settings),
        "sides": sides,
        "identical": True,
        "examples": examples,
        "cpuSpeedup": round(cpu_speedup, 3),
        "wallSpeedup": round(sum(wall["before"]) / sum(wall["after"]), 3),
        "wallSpeedupMedianOfChunks": median_ratio("after"),
        "serialWallSpeedupMedianOfChunks": median_ratio("serial"),
    }
    summary = (
        f"data prep {settings.before} -> working tree: {cpu_speedup:.2f}x per CPU-second, "
        f"{record['wallSpeedup']:.2f}x wall (median chunk {median_ratio('after'):.2f}x; "
        f"one thread {median_ratio('serial'):.2f}x), {n} conversations, outputs identical; "
        f"load {record['machine'].get('loadAverage1m')}"
    )
    record["summary"] = summary
    results.mkdir(parents=True, exist_ok=True)
    (results / "prep_before_after.json").write_text(json.dumps(record, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(main())
