"""The TRL side of `trainer_vs_trl.py`: `SFTTrainer` through its documented API, one run.

Run as its own process (so its peak memory is its own):

    python bench/trl_sft.py --settings settings.json --out result.json

`settings.json` names the model folder, the packed training rows (JSONL of `input_ids`,
`labels`, `seq_lengths`: TRL's own packed format, here holding kubesft's bins in
kubesft's order) and the hyperparameters. The rows skip TRL's dataset preparation
(`dataset_kwargs={"skip_prepare_dataset": True}`) and are read in order
(`train_sampling_strategy="sequential"`), so both trainers see the same tokens in the
same steps; `data_prep.py` measures TRL's preparation on its own. Packing stays on with
the `bfd` strategy, which makes TRL's collator padding-free: each micro-batch is one
flattened row with `position_ids` restarting per example, as in kubesft.

The result holds one record per optimizer step: the logged loss and the seconds from the
end of the previous step's logging to the end of this step (data loading, collation,
forward, backward and optimizer step, as kubesft's per-step timing covers). With
`--progress`, a line per step is appended to that file after the step's logging, as
kubesft appends to its metrics.jsonl, so the parent can time whole iterations of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--progress", type=Path, help="file to append a line to per step")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings.read_text(encoding="utf-8"))
    result = run(settings, args.progress)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def run(settings: dict[str, Any], progress: Path | None = None) -> dict[str, Any]:
    import datasets
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    started = time.perf_counter()

    class StepClock(TrainerCallback):  # type: ignore[misc]
        """Per-step loss and time, with TRL's own logging left outside the step."""

        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []
            self.ready = time.perf_counter()
            self.step_end = self.ready

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.ready = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.step_end = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                seconds = self.step_end - self.ready
                step = state.global_step
                self.steps.append({"step": step, "loss": logs["loss"], "seconds": seconds})
                if progress is not None:  # one record per step, as kubesft's metrics.jsonl
                    with progress.open("a") as fh:
                        fh.write(
                            json.dumps({"type": "train", "step": step}, separators=(",", ":"))
                            + "\n"
                        )
            self.ready = time.perf_counter()

    rows = [json.loads(line) for line in Path(settings["data"]).read_text().splitlines()]
    train = datasets.Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    config = SFTConfig(
        output_dir=settings["output_dir"],
        max_steps=settings["steps"],
        per_device_train_batch_size=settings["micro_batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["scheduler"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        max_length=settings["max_seq_length"],
        packing=True,
        packing_strategy="bfd",
        dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="sequential",
        model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
        bf16=settings.get("bf16", False),
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=settings.get("device", "cpu") == "cpu",
        seed=settings["seed"],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    clock = StepClock()
    trainer = SFTTrainer(
        model=settings["model"],
        args=config,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    import torch

    cuda = torch.cuda.is_available() and not config.use_cpu
    return {
        "peakGpuMemoryGiB": (
            round(torch.cuda.max_memory_allocated() / 1024**3, 2) if cuda else None
        ),
        "steps": clock.steps,
        "optimizer": str(trainer.args.optim),
        "paddingFree": bool(trainer.padding_free),
        "gradientCheckpointing": bool(trainer.model.is_gradient_checkpointing),
        "attnImplementation": trainer.model.config._attn_implementation,
        "wallSeconds": time.perf_counter() - started,
    }


if __name__ == "__main__":
    sys.exit(main())
