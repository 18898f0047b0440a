"""Data preparation throughput: kubesft's pipeline against TRL's, on 50k conversations.

Both sides render the chat template, tokenize, mask all but the assistant turns, truncate
to `--max-seq-length` and pack best-fit-decreasing, starting from the same rows in memory
with the same tokenizer and the same ChatML rendering:
- kubesft: `data.tokenize_split` (turns located structurally, batched tokenizer calls)
  then `data.build_units` (`packing.pack_examples`), as `train.load_inputs` does;
- TRL: `SFTTrainer._prepare_dataset` with `assistant_only_loss=True`, `packing=True`,
  `packing_strategy="bfd"`: the code the SFTTrainer constructor runs on a train dataset.
  Its assistant masks need `{% generation %}` markers, so TRL gets ChatML with markers
  around each assistant turn's content and `<|im_end|>`, which renders the same text and
  marks the same characters kubesft grades; the fidelity check counts identical examples.

The rows go through in chunks, alternating which side goes first, so a busy machine
slows both alike; a full garbage collection runs, untimed, before each side's turn, so
neither pays for collections the other's objects (kubesft's examples, TRL's datasets)
would trigger. Reported: examples/s (wall clock and per CPU-second), the share of
real tokens in kubesft's bins, TRL's bins and in batches padded to their longest
example. Results go to `bench/results/data_prep.json` and `data_prep.png`.

    .venv/bin/python bench/data_prep.py [--conversations 50000] [--work DIR]
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench.bench_cli import bench_main  # noqa: E402
from bench.conversations import make_conversations, write_jsonl  # noqa: E402
from bench.machine import machine_info  # noqa: E402

RESULTS = REPO / "bench" / "results"
T = TypeVar("T")

CHATML_WITH_GENERATION = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""kubesft's ChatML (templates/chatml.jinja) with TRL's assistant markers added."""


@dataclass(frozen=True)
class Settings:
    conversations: int = 50_000
    chunk: int = 5_000
    max_seq_length: int = 1024
    padded_batch_size: int = 8
    fidelity_rows: int = 1_000
    vocab_size: int = 4096
    seed: int = 0


@dataclass
class Clock:
    """Wall and CPU seconds (all threads of this process) spent in one side's work."""

    wall: float = 0.0
    cpu: float = 0.0

    def time(self, work: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return result


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        __doc__ or "",
        Settings,
        benchmark,
        results=RESULTS,
        work_help="folder for the tokenizer",
        prefix="kubesft-bench-data-",
        argv=argv,
    )


def benchmark(work: Path, settings: Settings, results: Path) -> str:
    import datasets

    from kubesft.api.job import Training
    from kubesft_trainer import data
    from kubesft_trainer.packing import packing_stats

    datasets.disable_progress_bars()
    rows = make_conversations(settings.conversations, seed=settings.seed)
    model = build_tokenizer_model(work, rows[:2000], settings)
    kubesft_tokenizer, template = kubesft_inputs(model)
    trl_tokenizer, trainer = trl_inputs(model, settings)
    training = Training.model_validate(
        {"maxSeqLength": settings.max_seq_length, "packing": True, "lossOn": "assistant"}
    )
    fidelity = compare_examples(
        rows[: settings.fidelity_rows],
        kubesft_tokenizer,
        template,
        trl_tokenizer,
        trainer,
        training,
    )

    ours, theirs, conversion = Clock(), Clock(), Clock()
    examples: list[Any] = []
    trl_bins: list[list[int]] = []  # seq_lengths of each TRL packed row
    chunks = range(0, len(rows), settings.chunk)
    chunk_rates: dict[str, list[float]] = {"kubesft": [], "trl": []}
    chunk_cpu: dict[str, list[float]] = {"kubesft": [], "trl": []}
    for number, start in enumerate(chunks):
        chunk = rows[start : start + settings.chunk]

        def kubesft_chunk(chunk: list[dict[str, Any]] = chunk) -> None:
            before, before_cpu = ours.wall, ours.cpu
            split = ours.time(
                lambda: data.tokenize_split(chunk, kubesft_tokenizer, training, template, "bench")
            )
            examples.extend(split.examples)
            chunk_rates["kubesft"].append(len(chunk) / (ours.wall - before))
            chunk_cpu["kubesft"].append(ours.cpu - before_cpu)

        def trl_chunk(chunk: list[dict[str, Any]] = chunk) -> None:
            dataset = conversion.time(lambda: datasets.Dataset.from_list(chunk))
            before, before_cpu = theirs.wall, theirs.cpu
            packed = theirs.time(
                lambda: trainer._prepare_dataset(
                    dataset, trl_tokenizer, trainer.args, True, None, "train"
                )
            )
            trl_bins.extend(packed["seq_lengths"])
            chunk_rates["trl"].append(len(chunk) / (theirs.wall - before))
            chunk_cpu["trl"].append(theirs.cpu - before_cpu)

        for side in (kubesft_chunk, trl_chunk) if number % 2 == 0 else (trl_chunk, kubesft_chunk):
            # Untimed: neither side pays for collections that objects the other left caused.
            gc.collect()
            side()
        print(f"chunk {number + 1}/{len(chunks)}", flush=True)
    before_packing = ours.wall
    units = ours.time(lambda: data.build_units(examples, training))
    pack_seconds = ours.wall - before_packing

    lengths = [len(example) for example in examples]
    ours_packing = packing_stats(units, lengths, settings.max_seq_length)
    trl_real = sum(sum(bin_) for bin_ in trl_bins)
    report = summarize(
        settings,
        ours,
        theirs,
        conversion,
        chunk_rates,
        chunk_cpu,
        fidelity,
        packing={
            "kubesftBfd": {
                "efficiency": ours_packing.efficiency,
                "bins": ours_packing.num_bins,
                "realTokens": ours_packing.real_tokens,
                "examples": ours_packing.num_examples,
            },
            "trlBfd": {
                "efficiency": trl_real / (len(trl_bins) * settings.max_seq_length),
                "bins": len(trl_bins),
                "realTokens": trl_real,
                "examples": sum(len(bin_) for bin_ in trl_bins),
            },
            "paddedToLongest": padded_efficiency(lengths, settings.padded_batch_size),
            "kubesftPackSeconds": round(pack_seconds, 3),
        },
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / "data_prep.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, results / "data_prep.png")
    return str(report["summary"])


def build_tokenizer_model(work: Path, corpus: list[dict[str, Any]], settings: Settings) -> Path:
    """The tiny-model CLI's byte-level BPE, trained on the first conversations."""
    import subprocess

    write_jsonl(work / "corpus.jsonl", corpus)
    model = work / "model"
    command = [
        *(sys.executable, "-m", "kubesft_trainer", "tiny-model", "--out", str(model)),
        *("--corpus", str(work / "corpus.jsonl"), "--vocab-size", str(settings.vocab_size)),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return model


def kubesft_inputs(model: Path) -> tuple[Any, str]:
    """Tokenizer and template as the trainer resolves them (chatTemplate chatml)."""
    from transformers import AutoTokenizer

    from kubesft_trainer.chat_template import resolve_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model)
    return tokenizer, resolve_chat_template("chatml", tokenizer)


def trl_inputs(model: Path, settings: Settings) -> tuple[Any, Any]:
    """A constructed SFTTrainer whose `_prepare_dataset` is then timed on each chunk."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = CHATML_WITH_GENERATION
    config = SFTConfig(
        output_dir=str(model.parent / "trl-output"),
        max_length=settings.max_seq_length,
        packing=True,
        packing_strategy="bfd",
        assistant_only_loss=True,
        bf16=False,
        use_cpu=True,
        report_to="none",
        gradient_checkpointing=False,
    )
    sample = datasets.Dataset.from_list(make_conversations(8, seed=settings.seed + 1))
    trainer = SFTTrainer(
        model=str(model), args=config, train_dataset=sample, processing_class=tokenizer
    )
    return tokenizer, trainer


def compare_examples(
    rows: list[dict[str, Any]],
    kubesft_tokenizer: Any,
    template: str,
    trl_tokenizer: Any,
    trainer: Any,
    training: Any,
) -> dict[str, Any]:
    """Token ids and labels per example, kubesft against TRL without packing."""
    import datasets

    from kubesft_trainer import data
    from kubesft_trainer.chat_template import render_conversation

    ours = data.tokenize_split(rows, kubesft_tokenizer, training, template, "fidelity").examples
    theirs = trainer._prepare_dataset(
        datasets.Dataset.from_list(rows), trl_tokenizer, trainer.args, False, None, "fidelity"
    )
    same_text = sum(
        render_conversation(row["messages"], template, kubesft_tokenizer)
        == trl_tokenizer.apply_chat_template(row["messages"], tokenize=False)
        for row in rows
    )
    identical = sum(
        mine.input_ids == list(their_ids) and mine.labels == list(their_labels)
        for mine, their_ids, their_labels in zip(
            ours, theirs["input_ids"], theirs["labels"], strict=False
        )
    )
    return {
        "rows": len(rows),
        "renderedTextIdentical": same_text,
        "kubesftExamples": len(ours),
        "trlExamples": len(theirs),
        "identicalIdsAndLabels": identical,
    }


def padded_efficiency(lengths: Sequence[int], batch_size: int) -> dict[str, Any]:
    """Real-token share without packing: batches in data order, padded to their longest."""
    real = sum(lengths)
    padded = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size])
        for i in range(0, len(lengths), batch_size)
    )
    return {"efficiency": real / padded, "batchSize": batch_size, "realTokens": real}


def summarize(
    settings: Settings,
    ours: Clock,
    theirs: Clock,
    conversion: Clock,
    chunk_rates: dict[str, list[float]],
    chunk_cpu: dict[str, list[float]],
    fidelity: dict[str, Any],
    packing: dict[str, Any],
) -> dict[str, Any]:
    n = settings.conversations
    ours_rate, theirs_rate = n / ours.wall, n / theirs.wall
    ratio = ours_rate / theirs_rate
    cpu_ratio = theirs.cpu / ours.cpu
    # Each chunk ran both sides back to back, so its ratio saw the same machine load.
    paired = statistics.median(
        a / b for a, b in zip(chunk_rates["kubesft"], chunk_rates["trl"], strict=True)
    )
    efficiency = packing["kubesftBfd"]["efficiency"]
    padded = packing["paddedToLongest"]
    summary = (
        f"data prep vs TRL: {ratio:.2f}x examples/s (kubesft {ours_rate:.0f} ex/s, "
        f"TRL {theirs_rate:.0f} ex/s, {n} conversations; median chunk {paired:.2f}x, "
        f"{cpu_ratio:.2f}x per CPU-second), "
        f"packing {100 * efficiency:.2f}% real tokens (padded to longest of "
        f"{padded['batchSize']}: {100 * padded['efficiency']:.1f}%)"
    )
    return {
        "benchmark": "data_prep",
        "summary": summary,
        "machine": machine_info(),
        "settings": asdict(settings),
        "kubesft": {
            "examplesPerSecond": round(ours_rate, 1),
            "wallSeconds": round(ours.wall, 2),
            "cpuSeconds": round(ours.cpu, 2),
            "examplesPerSecondByChunk": [round(x, 1) for x in chunk_rates["kubesft"]],
            "cpuSecondsByChunk": [round(x, 2) for x in chunk_cpu["kubesft"]],
        },
        "trl": {
            "examplesPerSecond": round(theirs_rate, 1),
            "wallSeconds": round(theirs.wall, 2),
            "cpuSeconds": round(theirs.cpu, 2),
            "examplesPerSecondByChunk": [round(x, 1) for x in chunk_rates["trl"]],
            "cpuSecondsByChunk": [round(x, 2) for x in chunk_cpu["trl"]],
            "datasetFromListSeconds": round(conversion.wall, 2),
            "note": "Dataset.from_list (rows -> Arrow) is not counted in TRL's time",
        },
        "ratioExamplesPerSecond": round(ratio, 3),
        "ratioCpuSeconds": round(cpu_ratio, 3),
        "ratioMedianOfChunks": round(paired, 3),
        "fidelity": fidelity,
        "packing": packing,
        "targets": {"examplesPerSecondRatio": 2.0, "packingEfficiency": 0.99},
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for side, name, style in (("kubesft", "kubesft", "o-"), ("trl", "TRL", "s--")):
        rates = report[side]["examplesPerSecondByChunk"]
        left.plot(
            range(1, len(rates) + 1),
            rates,
            style,
            label=f"{name} ({report[side]['examplesPerSecond']:.0f} ex/s overall)",
        )
    left.set(
        xlabel="chunk (alternating order)",
        ylabel="examples / s (wall clock)",
        title=f"Render + tokenize + mask (+ pack), kubesft/TRL = "
        f"{report['ratioExamplesPerSecond']:.2f}x",
    )
    left.set_ylim(bottom=0)
    left.legend()
    packing = report["packing"]
    names = ["kubesft BFD", "TRL BFD", f"padded, batch {packing['paddedToLongest']['batchSize']}"]
    values = [100 * packing[k]["efficiency"] for k in ("kubesftBfd", "trlBfd", "paddedToLongest")]
    bars = right.bar(names, values, color=["tab:blue", "tab:orange", "tab:grey"])
    right.bar_label(bars, fmt="%.2f%%")
    right.set(
        ylabel="real tokens / capacity (%)",
        ylim=(0, 105),
        title=f"Packing efficiency at maxSeqLength {report['settings']['max_seq_length']}",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
