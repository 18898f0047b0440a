"""Training throughput of kubesft's trainer against TRL's `SFTTrainer`, same model and data.

kubesft runs its real recipe, `python -m kubesft_trainer train --config ...`, as a Job
does. TRL runs `SFTTrainer` (`bench/trl_sft.py`) with packing on (`bfd`, which makes it
padding-free) on the same saved model, the same bins of the same examples in the same
order, the same AdamW settings, schedule, sequence length, steps and tokens per step.
Both train in fp32 without gradient checkpointing, with SDPA attention (no flash kernels
on CPU) and `--threads` torch threads (1 by default: on shared cores a single thread is
far less disturbed by other load). Each side runs as its own process, alternated over
`--rounds` rounds, so a busy machine slows both alike.

Both append a record per optimizer step (kubesft its metrics.jsonl, TRL a progress
file), and this script notes wall time and the child's CPU time as each record lands:
the interval from the record of step `--skip-steps` to the last one covers whole loop
iterations, logging included, on both sides. Reported per side: real tokens per second
(the best round: load from other work only ever slows a run down) and per CPU-second
(the median round), peak RSS of the process, MFU against the fp32 matmul rate measured
here with the same threads (`machine.py`), end-to-end wall time; and both losses at
every step with their largest relative difference. Results go to
`bench/results/trainer_vs_trl.json` and `trainer_vs_trl_loss.png`.

    .venv/bin/python bench/trainer_vs_trl.py [--steps 16] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")]

from bench.bench_cli import bench_main  # noqa: E402
from bench.conversations import make_conversations, write_jsonl  # noqa: E402
from bench.machine import (  # noqa: E402
    datasheet_peak,
    machine_info,
    measure_matmul_peak,
    model_shape,
    training_flops,
)

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Settings:
    """One configuration, applied to both trainers."""

    conversations: int = 400
    steps: int = 16
    skip_steps: int = 4
    """Steps left out of the throughput (allocator and thread-pool warm-up)."""
    rounds: int = 3
    max_seq_length: int = 1024
    micro_batch_size: int = 1
    gradient_accumulation: int = 2
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.1
    hidden_size: int = 256
    intermediate_size: int = 768
    layers: int = 4
    vocab_size: int = 4096
    heads: int = 4
    kv_heads: int = 2
    pad_vocab_to: int = 0
    """Embedding rows at least this many (the tokenizer learns fewer on synthetic chats)."""
    seed: int = 42
    threads: int = 1
    """torch threads of both sides (and of the peak measurement); 1 is robust on shared cores."""
    device: str = "cpu"
    """cpu (GPUs hidden from both sides) or cuda."""
    precision: str = "fp32"
    """fp32, or bf16: fp32 master weights with bf16 autocast on both sides."""


PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    # TinyLlama-1.1B's shape, random init, full fine-tuning in bf16 on one GPU.
    "gpu-1b": {
        "device": "cuda",
        "precision": "bf16",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "layers": 22,
        "heads": 32,
        "kv_heads": 4,
        "vocab_size": 32000,
        "pad_vocab_to": 32000,
        "max_seq_length": 4096,
        "gradient_accumulation": 4,
        "conversations": 6000,
        "steps": 30,
        "skip_steps": 10,
        "rounds": 2,
        "learning_rate": 1e-4,
        "threads": 4,
    },
}


@dataclass
class Run:
    """One process of one side: per-step losses and seconds, and what the OS measured."""

    side: str
    round: int
    losses: list[float]
    step_seconds: list[float]
    """Each step as the trainer itself timed it (its own logging left out)."""
    marks: list[tuple[float, float]]
    """Per step: (wall, process CPU seconds) when its record appeared, seen from outside."""
    wall_seconds: float
    peak_rss_mib: float
    cpu_seconds: float
    details: dict[str, Any]


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        __doc__ or "",
        Settings,
        benchmark,
        results=RESULTS,
        work_help="folder for data, model and outputs",
        prefix="kubesft-bench-trl-",
        argv=argv,
        presets=PRESETS,
    )


def benchmark(work: Path, settings: Settings, results: Path) -> str:
    """Build inputs, run both sides alternately, write the JSON and the plot."""
    model, config_path = prepare_inputs(work, settings)
    plan = kubesft_step_plan(config_path, settings)
    trl_settings = write_trl_inputs(work, model, plan, settings)
    torch_threads(settings.threads)
    peak = measure_peak(settings)
    runs: list[Run] = []
    for round_ in range(settings.rounds):
        sides = ("kubesft", "trl") if round_ % 2 == 0 else ("trl", "kubesft")
        for side in sides:
            if side == "kubesft":
                runs.append(run_kubesft(work, config_path, plan, round_, settings))
            else:
                runs.append(run_trl(work, trl_settings, round_, settings))
            print(f"round {round_ + 1} {side}: {runs[-1].wall_seconds:.0f} s", flush=True)
    peak = max(peak, measure_peak(settings))
    shape = model_shape(str(model))
    report = summarize(runs, plan, shape, peak, settings)
    results.mkdir(parents=True, exist_ok=True)
    name = "trainer_vs_trl" if settings.device == "cpu" else "trainer_vs_trl_gpu"
    (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, report, results / f"{name}_loss.png")
    return report["summary"]


def measure_peak(settings: Settings) -> float:
    """The best matmul rate here: fp32 on CPU, bf16 on the GPU (what the trainers run)."""
    if settings.device == "cpu":
        return measure_matmul_peak()
    return measure_matmul_peak(8192, 10, device=settings.device, dtype="bfloat16")


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def prepare_inputs(work: Path, settings: Settings) -> tuple[Path, Path]:
    """Synthetic conversations as a prepared dataset, a tiny Llama, and kubesft's config."""
    dataset = work / "dataset"
    write_jsonl(dataset / "train.jsonl", make_conversations(settings.conversations, seed=0))
    model = work / "model"
    trainer_cli(
        *("tiny-model", "--out", model, "--corpus", dataset / "train.jsonl"),
        *("--vocab-size", settings.vocab_size, "--hidden-size", settings.hidden_size),
        *("--intermediate-size", settings.intermediate_size, "--layers", settings.layers),
        *("--heads", settings.heads, "--kv-heads", settings.kv_heads),
        *("--max-positions", settings.max_seq_length, "--pad-vocab-to", settings.pad_vocab_to),
    )
    spec = {
        "model": {"name": "tiny-llama", "source": "pvc", "pvc": {"claimName": "models"}},
        "dataset": {"name": "synthetic-chat"},
        "method": {"type": "full"},
        "training": {
            "maxSteps": settings.steps,
            "learningRate": settings.learning_rate,
            "scheduler": "cosine",
            "warmupRatio": settings.warmup_ratio,
            "weightDecay": 0.0,
            "maxGradNorm": 1.0,
            "optimizer": "adamw",
            "microBatchSize": settings.micro_batch_size,
            "gradientAccumulation": settings.gradient_accumulation,
            "maxSeqLength": settings.max_seq_length,
            "packing": True,
            "lossOn": "assistant",
            "gradientCheckpointing": False,
            "precision": settings.precision,
            "attnImplementation": "sdpa",
            "seed": settings.seed,
        },
        "evaluation": {"samples": 0},
        "checkpoints": {"everySteps": 10**6, "keep": 1, "keepBest": False},
        "output": {"pvc": {"claimName": "out"}},
    }
    runtime = {
        "outputDir": str(work / "kubesft-output"),
        "datasets": [{"name": "synthetic-chat", "dir": str(dataset)}],
        "modelPath": str(model),
        "terminationLog": str(work / "termination-log"),
        "progressIntervalSeconds": 0,
    }
    config_path = work / "trainer-config.json"
    config_path.write_text(json.dumps({"spec": spec, "runtime": runtime}), encoding="utf-8")
    return model, config_path


@dataclass(frozen=True)
class StepPlan:
    """The micro-batches of each step as kubesft's recipe builds them (one rank)."""

    micro_batches: list[list[tuple[list[int], list[int]]]]
    """Per micro-batch: the (input_ids, labels) of its examples, in order."""
    steps: list[list[int]]
    """Per step: indices into `micro_batches`."""

    def example_lengths(self, step: int) -> list[int]:
        return [len(ids) for mb in self.steps[step] for ids, _ in self.micro_batches[mb]]

    def tokens(self, step: int) -> int:
        return sum(self.example_lengths(step))

    def graded_share(self) -> float:
        """Share of tokens whose label is graded (the rest, prompts and headers, is not)."""
        labels = [t for mb in self.micro_batches for _, labels in mb for t in labels]
        return sum(t != -100 for t in labels) / len(labels)


def kubesft_step_plan(config_path: Path, settings: Settings) -> StepPlan:
    """Rebuild what `train.load_inputs` and `loop.train_loop` feed each step, with their code."""
    from kubesft_trainer import data
    from kubesft_trainer.config import load_config
    from kubesft_trainer.data import DataPosition, MicroBatchPlan, step_micro_batches
    from kubesft_trainer.model import load_tokenizer, model_source

    config = load_config(config_path)
    training = config.spec.training
    tokenizer, template = load_tokenizer(config.spec, model_source(config.spec, config.runtime))
    _, split = data.load_split(
        Path(config.runtime.datasets[0].dir), "train", tokenizer, training, template
    )
    units = data.build_units(split.examples, training)
    plan = MicroBatchPlan(
        units, training.micro_batch_size, world_size=1, rank=0, seed=training.seed
    )
    needed = settings.steps * settings.gradient_accumulation
    if needed > plan.per_rank:
        raise SystemExit(
            f"{settings.steps} steps need {needed} micro-batches but one epoch has "
            f"{plan.per_rank}; raise --conversations so both trainers stay in epoch 0"
        )
    micro_batches, steps, position = [], [], DataPosition()
    for _ in range(settings.steps):
        groups, position = step_micro_batches(plan, position, settings.gradient_accumulation)
        steps.append(list(range(len(micro_batches), len(micro_batches) + len(groups))))
        for group in groups:
            examples = [split.examples[i] for i in group]
            micro_batches.append([(e.input_ids, e.labels) for e in examples])
    return StepPlan(micro_batches, steps)


def write_trl_inputs(work: Path, model: Path, plan: StepPlan, settings: Settings) -> Path:
    """kubesft's micro-batches as TRL packed rows, and the settings file for `trl_sft.py`."""
    rows = []
    for micro_batch in plan.micro_batches:
        rows.append(
            {
                "input_ids": [t for ids, _ in micro_batch for t in ids],
                "labels": [t for _, labels in micro_batch for t in labels],
                "seq_lengths": [len(ids) for ids, _ in micro_batch],
            }
        )
    write_jsonl(work / "trl-rows.jsonl", rows)
    warmup = math.ceil(settings.warmup_ratio * settings.steps)  # as kubesft's plan_run
    trl_settings = {
        "model": str(model),
        "data": str(work / "trl-rows.jsonl"),
        "output_dir": str(work / "trl-output"),
        "steps": settings.steps,
        # One TRL row is one kubesft micro-batch, already flattened.
        "micro_batch_size": 1,
        "gradient_accumulation": settings.gradient_accumulation,
        "learning_rate": settings.learning_rate,
        "scheduler": "cosine",
        "warmup_steps": warmup,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_seq_length": settings.max_seq_length * settings.micro_batch_size,
        "seed": settings.seed,
        "device": settings.device,
        "bf16": settings.precision == "bf16",
    }
    path = work / "trl-settings.json"
    path.write_text(json.dumps(trl_settings, indent=2), encoding="utf-8")
    return path


def child_env(device: str = "cpu", **extra: str) -> dict[str, str]:
    path = [str(REPO / "operator"), str(REPO / "trainer-image")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONWARNINGS": "ignore",
        **extra,
    }
    if device == "cpu":  # the CPU set: both sides on the CPU even where a GPU is present
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Measured:
    wall_seconds: float
    peak_rss_mib: float
    cpu_seconds: float
    marks: list[tuple[float, float]]


def measured(command: list[str], log: Path, progress: Path, settings: Settings) -> Measured:
    """Run `command`, noting wall and CPU time whenever a step record lands in `progress`.

    Both trainers append one line per optimizer step (kubesft's metrics.jsonl, TRL's
    progress file) after the step and its logging, so the time between two records is a
    whole loop iteration on either side. CPU time is the child's utime + stime (all its
    threads), which other load on the machine disturbs far less than wall time.
    """
    started = time.perf_counter()
    marks: list[tuple[float, float]] = []
    threads = str(settings.threads)
    env = child_env(settings.device, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        size = -1
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if progress.exists() and progress.stat().st_size != size:
                now, cpu = time.perf_counter(), _cpu_seconds(process.pid)
                text = progress.read_bytes()
                size = len(text)
                steps = text.count(STEP_MARKER)
                marks.extend([(now, cpu)] * (steps - len(marks)))
            time.sleep(POLL_SECONDS)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed; see {log}:\n{log.read_text()[-3000:]}")
    return Measured(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, marks)


STEP_MARKER = b'"type":"train"'
"""How a step record starts, in kubesft's metrics.jsonl and in trl_sft.py's progress file."""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, from /proc (clock-tick resolution)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trainer_cli(*args: str | Path | int) -> None:
    command = [sys.executable, "-m", "kubesft_trainer", *map(str, args)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed:\n{done.stdout}\n{done.stderr}")


def run_kubesft(
    work: Path, config_path: Path, plan: StepPlan, round_: int, settings: Settings
) -> Run:
    """The trainer CLI, as a Job runs it; per-step loss and tokens/s from metrics.jsonl."""
    config = json.loads(config_path.read_text())
    output = work / f"kubesft-output-{round_}"
    config["runtime"]["outputDir"] = str(output)
    path = work / f"trainer-config-{round_}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    command = [sys.executable, "-m", "kubesft_trainer", "train", "--config", str(path)]
    metrics = output / "metrics.jsonl"
    run = measured(command, work / f"kubesft-{round_}.log", metrics, settings)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    # The loop times each step from batch selection to the optimizer step, reporting left out.
    seconds = [plan.tokens(r["step"] - 1) / r["tokensPerSecond"] for r in train]
    losses = [r["trainLoss"] for r in train]
    gpu_memory = [r["gpuMemoryGiB"] for r in train if r.get("gpuMemoryGiB") is not None]
    details = {"peakGpuMemoryGiB": max(gpu_memory)} if gpu_memory else {}
    return Run(
        "kubesft",
        round_,
        losses,
        seconds,
        run.marks,
        run.wall_seconds,
        run.peak_rss_mib,
        run.cpu_seconds,
        details,
    )


def run_trl(work: Path, settings_path: Path, round_: int, settings: Settings) -> Run:
    out, progress = work / f"trl-{round_}.json", work / f"trl-{round_}.progress"
    command = [
        *(sys.executable, str(REPO / "bench" / "trl_sft.py")),
        *("--settings", str(settings_path), "--out", str(out), "--progress", str(progress)),
    ]
    run = measured(command, work / f"trl-{round_}.log", progress, settings)
    result = json.loads(out.read_text())
    steps = result.pop("steps")
    return Run(
        "trl",
        round_,
        [s["loss"] for s in steps],
        [s["seconds"] for s in steps],
        run.marks,
        run.wall_seconds,
        run.peak_rss_mib,
        run.cpu_seconds,
        result,
    )


def summarize(
    runs: list[Run], plan: StepPlan, shape: dict[str, int], peak: float, settings: Settings
) -> dict[str, Any]:
    """Per-side best and median rounds, ratios, loss agreement and the summary line."""
    measured_steps = range(settings.skip_steps, settings.steps)
    tokens = sum(plan.tokens(s) for s in measured_steps)
    flops = sum(training_flops(shape, plan.example_lengths(s)) for s in measured_steps)
    first, last = settings.skip_steps - 1, settings.steps - 1  # marks of the window's ends
    sides: dict[str, Any] = {}
    for side in ("kubesft", "trl"):
        mine = [r for r in runs if r.side == side]
        for run in mine:
            if len(run.losses) != settings.steps or len(run.marks) != settings.steps:
                raise RuntimeError(f"{side} logged {len(run.losses)} steps, not {settings.steps}")
        wall = [tokens / (r.marks[last][0] - r.marks[first][0]) for r in mine]
        cpu = [tokens / (r.marks[last][1] - r.marks[first][1]) for r in mine]
        own = [tokens / sum(r.step_seconds[s] for s in measured_steps) for r in mine]
        # The least disturbed round of each side: other load on the machine only slows down.
        rate = max(wall)
        gpu_memory = [r.details.get("peakGpuMemoryGiB") for r in mine]
        sides[side] = {
            "tokensPerSecond": round(rate, 1),
            "tokensPerSecondByRound": [round(x, 1) for x in wall],
            "tokensPerCpuSecond": round(statistics.median(cpu), 1),
            "tokensPerCpuSecondByRound": [round(x, 1) for x in cpu],
            "tokensPerSecondOwnTimingByRound": [round(x, 1) for x in own],
            "mfu": round(rate * flops / tokens / peak, 4),
            **_datasheet_mfu(rate * flops / tokens),
            "peakRssMiB": round(max(r.peak_rss_mib for r in mine), 1),
            "peakGpuMemoryGiB": max((m for m in gpu_memory if m is not None), default=None),
            "wallSecondsByRound": [round(r.wall_seconds, 1) for r in mine],
            "cpuSecondsByRound": [round(r.cpu_seconds, 1) for r in mine],
            "losses": mine[0].losses,
            "details": mine[0].details,
        }
    ratio = sides["kubesft"]["tokensPerSecond"] / sides["trl"]["tokensPerSecond"]
    cpu_ratio = sides["kubesft"]["tokensPerCpuSecond"] / sides["trl"]["tokensPerCpuSecond"]
    ours, theirs = sides["kubesft"]["losses"], sides["trl"]["losses"]
    differences = [abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True)]
    max_difference = max(differences)
    if settings.device == "cpu":
        where = f"CPU, {settings.threads} thread{'s' if settings.threads > 1 else ''}"
        extra = f"{cpu_ratio:.2f}x tokens per CPU-second"
    else:
        where = f"{machine_info()['gpu']}, {settings.precision}, {shape['parameters'] / 1e9:.2f}B"
        mfu = {side: sides[side].get("mfuDatasheet", sides[side]["mfu"]) for side in sides}
        extra = f"MFU kubesft {100 * mfu['kubesft']:.1f}%, TRL {100 * mfu['trl']:.1f}%"
    summary = (
        f"trainer vs TRL: {ratio:.2f}x tokens/s (kubesft {sides['kubesft']['tokensPerSecond']:.0f}"
        f" tok/s, TRL {sides['trl']['tokensPerSecond']:.0f} tok/s; {where}), "
        f"{extra}, loss curves within {100 * max_difference:.4f}%, "
        f"{100 * (1 - plan.graded_share()):.0f}% of tokens ungraded"
    )
    device = "CPU" if settings.device == "cpu" else "GPU"
    return {
        "benchmark": "trainer_vs_trl",
        "summary": summary,
        "machine": machine_info(),
        "settings": asdict(settings),
        "model": shape,
        "peakFlops": {
            "value": peak,
            "how": (
                "best fp32 torch.mm of 2048x2048 matrices on this machine, "
                f"{settings.threads} torch thread(s) as in training"
                if settings.device == "cpu"
                else "best bf16 8192x8192x8192 matmul on this GPU; mfuDatasheet uses "
                "NVIDIA's dense bf16 datasheet peak"
            ),
            "datasheet": (datasheet_peak() or (None, None))[1],
        },
        "measuredSteps": [settings.skip_steps + 1, settings.steps],
        "tokensPerStep": [plan.tokens(s) for s in range(settings.steps)],
        "gradedTokenShare": round(plan.graded_share(), 4),
        "flopsPerToken": flops / tokens,
        "ratioTokensPerSecond": round(ratio, 3),
        "ratioTokensPerCpuSecond": round(cpu_ratio, 3),
        "lossMaxRelativeDifference": round(max_difference, 6),
        "lossMaxRelativeDifferenceStep": differences.index(max_difference) + 1,
        "sides": sides,
        "targets": {
            "tokensPerSecondRatio": {"target": 1.5, "stated_for": "GPU", "measured_on": device},
            "mfu": {"target": 0.5, "stated_for": "GPU full fine-tuning", "measured_on": device},
            "lossMaxRelativeDifference": {"target": 0.02},
        },
    }


def _datasheet_mfu(flops_per_second: float) -> dict[str, float]:
    known = datasheet_peak()
    return {"mfuDatasheet": round(flops_per_second / known[1], 4)} if known else {}


def plot(runs: list[Run], report: dict[str, Any], path: Path) -> None:
    """Both loss curves (first round) and per-step throughput of every round."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tokens = report["tokensPerStep"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"kubesft": "tab:blue", "trl": "tab:orange"}
    names = {"kubesft": "kubesft (trainer CLI)", "trl": "TRL SFTTrainer"}
    for side in ("kubesft", "trl"):
        losses = report["sides"][side]["losses"]
        steps = range(1, len(losses) + 1)
        style = "-" if side == "kubesft" else "--"
        left.plot(steps, losses, style, color=colors[side], label=names[side])
        for run in (r for r in runs if r.side == side):
            ends = [wall for wall, _ in run.marks]
            rates = [float("nan")] + [
                t / (b - a) for t, a, b in zip(tokens[1:], ends[:-1], ends[1:], strict=True)
            ]
            label = f"{names[side]}, round {run.round + 1}"
            right.plot(
                steps,
                rates,
                style,
                color=colors[side],
                alpha=0.5 + 0.5 / (1 + run.round),
                label=label,
            )
    difference = report["lossMaxRelativeDifference"]
    left.set(
        xlabel="optimizer step",
        ylabel="train loss",
        title=f"Loss, same data and order (max relative difference {difference:.1e})",
    )
    left.legend()
    right.axvline(report["measuredSteps"][0] - 0.5, color="grey", lw=0.8, ls=":")
    right.set(
        xlabel="optimizer step",
        ylabel="real tokens / s",
        title=f"Throughput ({report['targets']['mfu']['measured_on']}), "
        f"kubesft/TRL = {report['ratioTokensPerSecond']:.2f}x",
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
