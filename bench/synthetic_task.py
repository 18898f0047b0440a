"""Synthetic instruction task: fine-tuning through the trainer CLI teaches a tiny model a skill.

The task: "Reverse the words: lease pod queue" → "Reversed: queue pod lease", over a closed
vocabulary of short Kubernetes words, 3 to 5 distinct words per prompt. Held-out prompts
are unseen combinations: no training prompt uses the same set of words as any eval
prompt, in any order, so the model must have learnt to reverse, not remembered answers.

Every step is the real command line, as a Job runs it:
`tiny-model` (a small Llama and a tokenizer trained on the task's texts) → `prepare`
(validate and split the SFTDataset) → `train` (full fine-tuning on CPU). The trainer's
greedy answers to the held-out prompts before and after training (eval.json) give the
exact match; metrics.jsonl gives the eval loss at step 0 and at the end.

    .venv/bin/python bench/synthetic_task.py [--work DIR] [--steps N] [--train N] ...

prints `exact match: before X% -> after Y%; eval loss A -> B (-Z%) in S s`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    *("pod", "node", "job", "lease", "secret", "volume", "service", "label", "taint", "quota"),
    *("event", "image", "probe", "shard", "token", "queue", "cache", "batch", "model", "port"),
)
INSTRUCTION = "Reverse the words:"
ANSWER = "Reversed:"
"""Answers open with it, so each word follows a space in the answer as in the prompt:
a byte-level BPE gives a word after a space (`Ġpod`) another token than at line start."""
MIN_WORDS, MAX_WORDS = 3, 5


@dataclass(frozen=True)
class Scale:
    """How big a run is: data, steps and the model's shape."""

    train: int = 3000
    evals: int = 64
    steps: int = 400
    learning_rate: float = 1e-3
    micro_batch_size: int = 1
    max_seq_length: int = 512
    hidden_size: int = 128
    layers: int = 2


@dataclass(frozen=True)
class Result:
    exact_before: float
    exact_after: float
    loss_before: float
    loss_after: float
    seconds: float

    @property
    def loss_drop(self) -> float:
        return 1 - self.loss_after / self.loss_before

    def summary(self) -> str:
        return (
            f"exact match: before {self.exact_before:.0%} -> after {self.exact_after:.0%}; "
            f"eval loss {self.loss_before:.3f} -> {self.loss_after:.3f} "
            f"(-{self.loss_drop:.1%}) in {self.seconds:.0f} s"
        )


def example(words: Sequence[str]) -> dict[str, Any]:
    """One conversation: the instruction with its words, and the words reversed."""
    return {
        "messages": [
            {"role": "user", "content": f"{INSTRUCTION} {' '.join(words)}"},
            {"role": "assistant", "content": " ".join((ANSWER, *reversed(words)))},
        ]
    }


def make_splits(train: int, evals: int, seed: int = 0) -> tuple[list[dict[str, Any]], ...]:
    """Training and held-out examples; no word set of an eval prompt is ever trained on."""
    rng = random.Random(seed)

    def draw() -> tuple[str, ...]:
        return tuple(rng.sample(WORDS, rng.randint(MIN_WORDS, MAX_WORDS)))

    held_out: dict[frozenset[str], tuple[str, ...]] = {}
    while len(held_out) < evals:
        words = draw()
        held_out.setdefault(frozenset(words), words)
    seen: set[tuple[str, ...]] = set()
    while len(seen) < train:
        words = draw()
        if frozenset(words) not in held_out:
            seen.add(words)
    # Sorted, then shuffled with the seed: the same files for the same seed.
    training = sorted(seen)
    rng.shuffle(training)
    return [example(w) for w in training], [example(w) for w in held_out.values()]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def dataset_spec() -> dict[str, Any]:
    """The SFTDataset: training rows on a volume, the held-out rows as its eval source."""
    return {
        "source": {"pvc": {"claimName": "data", "path": "train.jsonl"}},
        "format": "messages",
        "split": {"evalSource": {"pvc": {"claimName": "data", "path": "eval.jsonl"}}},
    }


def job_config(model: Path, dataset: Path, output: Path, scale: Scale) -> dict[str, Any]:
    """The trainer config an SFTJob becomes: full fine-tuning in fp32 on CPU."""
    spec = {
        "model": {"name": "tiny-llama", "source": "pvc", "pvc": {"claimName": "models"}},
        "dataset": {"name": "reverse-words"},
        "method": {"type": "full"},
        "training": {
            "maxSteps": scale.steps,
            "learningRate": scale.learning_rate,
            "warmupRatio": 0.05,
            "microBatchSize": scale.micro_batch_size,
            "gradientAccumulation": 1,
            "maxSeqLength": scale.max_seq_length,
            "gradientCheckpointing": False,
            "precision": "fp32",
            "seed": 0,
        },
        "evaluation": {"samples": scale.evals, "maxNewTokens": 2 * MAX_WORDS + 2},
        # Checkpoints are not what this measures; one at the end is enough.
        "checkpoints": {"everySteps": scale.steps, "keep": 1, "keepBest": False},
        "output": {"pvc": {"claimName": "out"}},
    }
    runtime = {
        "outputDir": str(output),
        "datasets": [{"name": "reverse-words", "dir": str(dataset)}],
        "modelPath": str(model),
        "terminationLog": str(output.parent / "termination-log"),
        "progressIntervalSeconds": 0,
    }
    return {"spec": spec, "runtime": runtime}


def trainer_cli(*args: str | Path) -> None:
    """`python -m kubesft_trainer ...` in a child process, as in the trainer image."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer-image")]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-m", "kubesft_trainer", *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed:\n{done.stdout}\n{done.stderr}")


def exact_match(samples: Sequence[dict[str, Any]], key: str) -> float:
    """Share of greedy answers equal to the reference (whitespace at the ends ignored)."""
    hits = sum(s[key].strip() == str(s["reference"]).strip() for s in samples)
    return hits / len(samples)


def eval_losses(metrics: Path) -> tuple[float, float]:
    """Eval loss of the untrained model (step 0) and after the last step."""
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    losses = [(r["step"], r["evalLoss"]) for r in records if r.get("type") == "eval"]
    return min(losses)[1], max(losses)[1]


def run(work: Path, scale: Scale) -> Result:
    """Generate, build, prepare, train and measure; everything lands under `work`."""
    started = time.perf_counter()
    train, held_out = make_splits(scale.train, scale.evals)
    source = work / "source"
    write_jsonl(source / "train.jsonl", train)
    write_jsonl(source / "eval.jsonl", held_out)
    model = work / "model"
    trainer_cli(
        *("tiny-model", "--out", model, "--corpus", source / "train.jsonl"),
        *("--hidden-size", scale.hidden_size, "--intermediate-size", 2 * scale.hidden_size),
        *("--layers", scale.layers),
    )
    spec = work / "dataset-spec.json"
    spec.write_text(json.dumps(dataset_spec()), encoding="utf-8")
    dataset = work / "dataset"
    trainer_cli(
        *("prepare", "--spec", spec, "--output", dataset),
        *("--source-path", source / "train.jsonl", "--eval-source-path", source / "eval.jsonl"),
        *("--termination-log", work / "prepare-termination-log"),
    )
    output = work / "output"
    config = work / "trainer-config.json"
    config.write_text(json.dumps(job_config(model, dataset, output, scale)), encoding="utf-8")
    trainer_cli("train", "--config", config)
    samples = json.loads((output / "eval.json").read_text(encoding="utf-8"))["samples"]
    before, after = eval_losses(output / "metrics.jsonl")
    return Result(
        exact_before=exact_match(samples, "before"),
        exact_after=exact_match(samples, "after"),
        loss_before=before,
        loss_after=after,
        seconds=time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for data, model and output")
    for name, default in vars(Scale()).items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, dest=name)
    args = vars(parser.parse_args(argv))
    work: Path | None = args.pop("work")
    scale = Scale(**args)
    if work is None:
        with tempfile.TemporaryDirectory(prefix="kubesft-synthetic-") as temporary:
            result = run(Path(temporary), scale)
    else:
        result = run(work, scale)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
