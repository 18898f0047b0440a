"""What per-turn expansion costs, and that it costs only the conversations that need it.

The same synthetic conversations (`conversations.py`) are masked with kubesft's ChatML (no
conversation needs expansion), with Qwen3's own template from the TRL wheel (its last
assistant turn carries a `<think>` block that earlier turns lose, so every multi-turn
conversation is trained one assistant turn per example) and with TRL's `qwen3_training`
variant (markers, history kept: no expansion). Reported per template: examples/s and
tokens/s of `data.tokenize_split` (CPU seconds, alternating templates per chunk),
conversations expanded, examples and tokens produced. Results go to
`bench/results/per_turn_cost.json`.

    .venv/bin/python bench/per_turn_cost.py [--conversations 4000]
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")]

from bench.bench_cli import bench_main  # noqa: E402
from bench.conversations import make_conversations, write_jsonl  # noqa: E402
from bench.machine import machine_info  # noqa: E402

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Settings:
    conversations: int = 4000
    chunk: int = 1000
    max_seq_length: int = 4096
    seed: int = 0


def templates() -> dict[str, str]:
    from kubesft_trainer.chat_template import load_builtin_template

    folder = resources.files("trl") / "chat_templates"
    return {
        "chatml": load_builtin_template("chatml"),
        "qwen3": (folder / "qwen3.jinja").read_text(),
        "qwen3_training": (folder / "qwen3_training.jinja").read_text(),
    }


def benchmark(work: Path, settings: Settings, results: Path) -> str:
    from kubesft.api.job import Training
    from kubesft_trainer import data
    from kubesft_trainer.tiny import build_tokenizer, corpus_texts

    rows = make_conversations(settings.conversations, seed=settings.seed)
    tokenizer = build_tokenizer(
        corpus_texts([write_jsonl(work / "corpus.jsonl", rows[:2000])]), vocab_size=4096
    )
    training = Training.model_validate(
        {"maxSeqLength": settings.max_seq_length, "lossOn": "assistant"}
    )
    chosen = templates()
    totals: dict[str, dict[str, float]] = {
        name: dict.fromkeys(("cpuSeconds", "examples", "tokens", "expanded", "added"), 0.0)
        for name in chosen
    }
    for number, start in enumerate(range(0, len(rows), settings.chunk)):
        chunk = rows[start : start + settings.chunk]
        names = list(chosen)
        for name in names[number % len(names) :] + names[: number % len(names)]:
            cpu = time.process_time()
            split = data.tokenize_split(chunk, tokenizer, training, chosen[name], "bench")
            total = totals[name]
            total["cpuSeconds"] += time.process_time() - cpu
            total["examples"] += len(split.lengths)
            total["tokens"] += sum(split.lengths)
            total["expanded"] += split.expanded_rows
            total["added"] += split.added_examples
    multi_turn = sum(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in rows)
    report: dict[str, Any] = {
        "benchmark": "per_turn_cost",
        "machine": machine_info(),
        "settings": asdict(settings),
        "multiTurnConversations": multi_turn,
        "templates": {
            name: {
                **total,
                "rowsPerCpuSecond": round(len(rows) / total["cpuSeconds"], 1),
                "tokensPerCpuSecond": round(total["tokens"] / total["cpuSeconds"], 1),
            }
            for name, total in totals.items()
        },
    }
    base = report["templates"]["chatml"]
    qwen3 = report["templates"]["qwen3"]
    report["summary"] = (
        f"per-turn expansion: qwen3 expands {int(qwen3['expanded'])} of {len(rows)} conversations "
        f"({multi_turn} multi-turn), {qwen3['examples'] / len(rows):.2f} examples and "
        f"{qwen3['tokens'] / base['tokens']:.2f}x the tokens of chatml per row; rows/CPU-s "
        + ", ".join(f"{n} {t['rowsPerCpuSecond']}" for n, t in report["templates"].items())
        + f"; chatml expands {int(base['expanded'])}"
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / "per_turn_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    return str(report["summary"])


def main() -> int:
    return bench_main(
        __doc__ or "",
        Settings,
        benchmark,
        results=RESULTS,
        work_help="folder for the tokenizer corpus (default: a temporary one)",
        prefix="kubesft-per-turn-",
    )


if __name__ == "__main__":
    raise SystemExit(main())
