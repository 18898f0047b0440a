"""Before/after of the two hot spots the CPU benchmarks found in kubesft, A/B in one process.

1. Masking: `masking.py` and `chat_template.py` as of `--before` (a git revision, by
   default the commit before the fix) against the working tree. Before: one renderer
   call per prefix and one tokenizer call per example; after: one renderer call per
   conversation for its prefixes and one batched tokenizer call per 1000 rows. Outputs
   must be identical (ids, labels, flags), and the script fails if they are not.
2. Optimizer: `torch.optim.AdamW` as `loop.build_optimizer` built it before (torch's
   default implementation, a per-tensor loop on CPU) against `fused=True`, on the
   trainer benchmark's model, next to the forward and backward of one 2048-token step.

Chunks and steps alternate between before and after, so machine load hits both alike.
Results go to `bench/results/fix_before_after.json`.

    .venv/bin/python bench/fix_before_after.py [--conversations 10000] [--before REV]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")]

from bench.conversations import make_conversations, write_jsonl  # noqa: E402
from bench.machine import machine_info  # noqa: E402

BEFORE = "5e9d24a"
"""The last commit with per-prefix rendering, per-example tokenizing and default AdamW."""
RESULTS = REPO / "bench" / "results"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--optimizer-steps", type=int, default=20)
    parser.add_argument("--before", default=BEFORE, help="git revision of the old masking code")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kubesft-bench-fix-") as temporary:
        work = Path(temporary)
        masking = masking_before_after(work, args.before, args.conversations, args.chunk)
        optimizer = optimizer_before_after(args.optimizer_steps)
    before, after = masking["before"], masking["after"]
    summary = (
        f"fixes: masking {masking['speedup']:.2f}x examples/s "
        f"(median chunk {masking['speedupMedianOfChunks']:.2f}x, "
        f"{masking['cpuSpeedup']:.2f}x per CPU-second; "
        f"{before['examplesPerSecond']:.0f} -> {after['examplesPerSecond']:.0f} ex/s, "
        f"outputs identical); AdamW step {optimizer['before']['msPerStep']:.1f} -> "
        f"{optimizer['after']['msPerStep']:.1f} ms ({optimizer['speedup']:.1f}x; "
        f"{100 * optimizer['before']['shareOfStep']:.1f}% -> "
        f"{100 * optimizer['after']['shareOfStep']:.1f}% of a 2048-token step)"
    )
    report = {
        "benchmark": "fix_before_after",
        "summary": summary,
        "machine": machine_info(),
        "before": args.before,
        "masking": masking,
        "optimizer": optimizer,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "fix_before_after.json").write_text(json.dumps(report, indent=2) + "\n")
    print(summary)
    return 0


def old_masking(work: Path, revision: str) -> Any:
    """`masking` of `revision`, importable next to the current one as `kubesft_trainer_before`."""
    package = work / "kubesft_trainer_before"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("masking", "chat_template"):
        source = subprocess.run(
            ["git", "show", f"{revision}:trainer-image/kubesft_trainer/{name}.py"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        source = source.replace(
            "from kubesft_trainer.chat_template", "from kubesft_trainer_before.chat_template"
        )
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(work))
    return importlib.import_module("kubesft_trainer_before.masking")


def masking_before_after(work: Path, revision: str, count: int, chunk: int) -> dict[str, Any]:
    from kubesft.api.job import Training
    from kubesft_trainer import data
    from kubesft_trainer.chat_template import load_builtin_template
    from kubesft_trainer.tiny import build_tokenizer, corpus_texts

    before = old_masking(work, revision)
    rows = make_conversations(count)
    corpus = write_jsonl(work / "corpus.jsonl", rows[:2000])
    tokenizer = build_tokenizer(corpus_texts([corpus]), vocab_size=4096)
    template = load_builtin_template("chatml")
    training = Training.model_validate({"maxSeqLength": 1024, "lossOn": "assistant"})
    options = {"loss_on": "assistant", "max_seq_length": 1024, "chat_template": template}

    def old_split(part: list[dict[str, Any]]) -> list[Any]:
        return [before.tokenize_example(row, tokenizer, **options) for row in part]

    def new_split(part: list[dict[str, Any]]) -> list[Any]:
        return data.tokenize_split(part, tokenizer, training, template, "bench").examples

    clocks = {"before": [0.0, 0.0], "after": [0.0, 0.0]}
    paired: list[float] = []  # after/before speed of each chunk, both run back to back
    identical = True
    for number, start in enumerate(range(0, count, chunk)):
        part = rows[start : start + chunk]
        order = (("before", old_split), ("after", new_split))
        outputs, seconds = {}, {}
        for name, split in order if number % 2 == 0 else order[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = split(part)
            seconds[name] = time.perf_counter() - wall
            clocks[name][0] += seconds[name]
            clocks[name][1] += time.process_time() - cpu
        paired.append(seconds["before"] / seconds["after"])
        kept = [e for e in outputs["before"] if not e.dropped]
        identical &= [_fields(e) for e in kept] == [_fields(e) for e in outputs["after"]]
    if not identical:
        raise SystemExit("masking before and after differ; the fix must not change any label")
    result = {
        name: {
            "examplesPerSecond": round(count / wall, 1),
            "examplesPerCpuSecond": round(count / cpu, 1),
        }
        for name, (wall, cpu) in clocks.items()
    }
    return {
        **result,
        "conversations": count,
        "identical": identical,
        "speedup": result["after"]["examplesPerSecond"] / result["before"]["examplesPerSecond"],
        "speedupMedianOfChunks": statistics.median(paired),
        "cpuSpeedup": result["after"]["examplesPerCpuSecond"]
        / result["before"]["examplesPerCpuSecond"],
    }


def _fields(example: Any) -> tuple[Any, ...]:
    return (example.input_ids, example.labels, example.truncated, example.dropped)


def optimizer_before_after(steps: int) -> dict[str, Any]:
    import torch

    from kubesft_trainer.tiny import TinyShape, build_model

    model = build_model(4096, TinyShape(hidden_size=256, intermediate_size=768, num_layers=4))
    model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]

    def groups() -> list[dict[str, Any]]:
        """Fresh dicts: an optimizer writes its defaults into the groups it is given."""
        return [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.0},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]

    optimizers = {
        "before": torch.optim.AdamW(groups(), lr=1e-3),
        "after": torch.optim.AdamW(groups(), lr=1e-3, fused=True),
    }
    assert optimizers["after"].param_groups[0]["fused"]
    tokens = torch.randint(0, 4096, (1, 2048))
    positions = torch.cat([torch.arange(1024), torch.arange(1024)]).unsqueeze(0)

    def forward_backward() -> float:
        started = time.perf_counter()
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=tokens, position_ids=positions).logits
        torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:]).backward()
        return time.perf_counter() - started

    step_seconds = [forward_backward() for _ in range(5)][2:]  # the first ones warm up
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for name in seconds:
        optimizers[name].step()  # allocate state outside the timing
    for number in range(steps):
        for name in ("before", "after") if number % 2 == 0 else ("after", "before"):
            started = time.perf_counter()
            optimizers[name].step()
            seconds[name].append(time.perf_counter() - started)
    forward_backward_s = statistics.median(step_seconds)
    # Medians: a step is milliseconds long, so one descheduling would dominate a mean.
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    result = {
        name: {
            "msPerStep": round(1000 * median, 2),
            "shareOfStep": round(median / (median + forward_backward_s), 4),
        }
        for name, median in medians.items()
    }
    return {
        **result,
        "parameters": sum(p.numel() for p in params),
        "forwardBackwardMsPer2048Tokens": round(1000 * forward_backward_s, 1),
        "speedup": medians["before"] / medians["after"],
    }


if __name__ == "__main__":
    sys.exit(main())
