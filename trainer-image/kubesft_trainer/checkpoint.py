"""Checkpoints that are either complete or invisible, and resuming from the latest one.

Layout of `<output>/checkpoints/step-N/`:
- lora/qlora: `adapter_model.safetensors` + `adapter_config.json` (loadable with peft) and
  `optimizer.pt`;
- full: `sharded/`, weights and optimizer state as torch.distributed.checkpoint shards
  (every rank's under FSDP), which load on any world size, sharded or replicated; with a
  replicated model also `model.safetensors` + `config.json` (loadable with `from_pretrained`);
- `scheduler.pt`, `rng-rank<R>.pt` (python, numpy, torch, cuda states);
- `trainer_state.json`: step, data position, eval loss, early-stopping counters, the
  retention loss before training;
- `run.json`: the run that wrote it (`run_identity`), resumed only by that run;
- `COMPLETE`, written last.
Everything is written into `.tmp-step-N` and renamed into place after `COMPLETE`, so a
crash leaves either no `step-N` or a whole one; leftover `.tmp-*` dirs are removed on
start. Pruning deletes `COMPLETE` first for the same reason. All ranks write their RNG
state, so the output directory must be shared by every node of a multi-node job.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kubesft.api.report import best_checkpoint
from kubesft_trainer import sharding
from kubesft_trainer.data import DataPosition
from kubesft_trainer.permissions import share_files
from kubesft_trainer.run_identity import stamp

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class CheckpointRecord:
    """A complete checkpoint on disk."""

    step: int
    path: Path
    eval_loss: float | None
    created_at: str

    def status(self) -> dict[str, Any]:
        """The entry for `status.checkpoints`."""
        return {
            "step": self.step,
            "path": str(self.path),
            "evalLoss": self.eval_loss,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class Progress:
    """What the loop must get back on resume, besides weights and optimizer."""

    step: int
    position: DataPosition
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    evals_without_improvement: int = 0
    world_size: int = 1
    retention_loss_before: float | None = None
    """Retention loss before training (`spec.evaluation.retention`), kept for the change."""


def save_checkpoint(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    output_dir: Path,
    progress: Progress,
    *,
    keep: int,
    keep_best: bool,
) -> CheckpointRecord:
    """Write `checkpoints/step-N` atomically on every rank's behalf; prune old ones."""
    root = Path(output_dir) / CHECKPOINTS
    tmp, final = root / f".tmp-step-{progress.step}", root / f"step-{progress.step}"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(capture_rng(), tmp / f"rng-rank{accelerator.process_index}.pt")
    created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    unwrapped = accelerator.unwrap_model(model)
    full_weights = not hasattr(unwrapped, "peft_config")
    if full_weights:  # collective; DCP loads on any world size, sharded or not
        sharding.save_sharded(unwrapped, optimizer, tmp / sharding.SHARDED_DIR)
    if main:
        if not sharding.is_sharded(model):
            save_weights(unwrapped, tmp)
        if not full_weights:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        _write_json(tmp / STATE_FILE, _state_document(progress, created_at))
        stamp(output_dir, tmp)  # which run wrote it: only that run resumes it
    accelerator.wait_for_everyone()
    if main:
        share_files(tmp)
        _sync_tree(tmp)
        _write_text(tmp / COMPLETE, created_at + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _fsync_dir(root)
        prune_checkpoints(output_dir, keep=keep, keep_best=keep_best)
    accelerator.wait_for_everyone()
    return CheckpointRecord(progress.step, final, progress.eval_loss, created_at)


def save_weights(model: Any, directory: Path) -> None:
    """Trainable weights: the peft adapter, or the whole model as safetensors plus config."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(directory)
        return
    from safetensors.torch import save_model

    save_model(model, str(directory / "model.safetensors"))  # handles tied weights
    model.config.save_pretrained(directory)


def load_weights(model: Any, directory: Path) -> None:
    """Load what `save_weights` wrote into the (unwrapped) model, in place."""
    if hasattr(model, "peft_config"):
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        weights = load_peft_weights(str(directory), device="cpu")
        result: Any = set_peft_model_state_dict(model, weights)
        if result.unexpected_keys:
            raise RuntimeError(
                f"checkpoint {directory} has unknown weights: {result.unexpected_keys}"
            )
        return
    from safetensors.torch import load_model

    load_model(model, str(directory / "model.safetensors"), strict=True)


def list_checkpoints(output_dir: Path) -> list[CheckpointRecord]:
    """Complete checkpoints, oldest first; anything without `COMPLETE` is not one."""
    root = Path(output_dir) / CHECKPOINTS
    records = []
    for path in root.iterdir() if root.is_dir() else ():
        match = STEP_DIR.match(path.name)
        if not match or not (path / COMPLETE).exists():
            continue
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        records.append(
            CheckpointRecord(int(match[1]), path, state.get("evalLoss"), state.get("createdAt", ""))
        )
    return sorted(records, key=lambda record: record.step)


def prune_checkpoints(output_dir: Path, *, keep: int, keep_best: bool) -> None:
    """Keep the `keep` latest checkpoints, plus the best by eval loss when `keep_best`."""
    records = list_checkpoints(output_dir)
    kept = {r.step for r in records[-keep:]}
    best = best_checkpoint(records) if keep_best else None
    if best is not None:
        kept.add(best.step)
    for record in records:
        if record.step not in kept:
            (record.path / COMPLETE).unlink()  # first, so a half-deleted dir is never resumed
            shutil.rmtree(record.path)


def remove_incomplete(output_dir: Path) -> None:
    """Remove leftovers of interrupted writes: `.tmp-*` dirs and step dirs without COMPLETE."""
    root = Path(output_dir) / CHECKPOINTS
    for path in root.iterdir() if root.is_dir() else ():
        if path.name.startswith(".tmp-") or (
            STEP_DIR.match(path.name) and not (path / COMPLETE).exists()
        ):
            shutil.rmtree(path, ignore_errors=True)


def resume_from(
    record: CheckpointRecord, accelerator: Any, model: Any, optimizer: Any, scheduler: Any
) -> Progress:
    """Restore weights, optimizer, scheduler and this rank's RNG from `record`."""
    path = record.path
    if (path / sharding.SHARDED_DIR).exists():  # re-sharded for this world size by DCP
        sharding.load_sharded(
            accelerator.unwrap_model(model), optimizer, path / sharding.SHARDED_DIR
        )
    else:
        load_weights(accelerator.unwrap_model(model), path)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu"))
    rng = path / f"rng-rank{accelerator.process_index}.pt"
    if rng.exists():  # absent when the world grew since; fresh randomness is then fine
        restore_rng(torch.load(rng))
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    return Progress(
        step=state["step"],
        position=DataPosition(state["epoch"], state["microBatch"]),
        eval_loss=state.get("evalLoss"),
        best_eval_loss=state.get("bestEvalLoss"),
        evals_without_improvement=state.get("evalsWithoutImprovement", 0),
        world_size=state.get("worldSize", 1),
        retention_loss_before=state.get("retentionLossBefore"),
    )


def capture_rng() -> dict[str, Any]:
    """Random states as plain lists and tensors, so `torch.load` needs no pickled objects."""
    version, internal, gauss = random.getstate()
    numpy_state: Any = np.random.get_state()
    name, keys, pos, has_gauss, cached = numpy_state
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _state_document(progress: Progress, created_at: str) -> dict[str, Any]:
    return {
        "step": progress.step,
        "epoch": progress.position.epoch,
        "microBatch": progress.position.micro_batch,
        "evalLoss": progress.eval_loss,
        "bestEvalLoss": progress.best_eval_loss,
        "evalsWithoutImprovement": progress.evals_without_improvement,
        "worldSize": progress.world_size,
        "retentionLossBefore": progress.retention_loss_before,
        "createdAt": created_at,
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    _write_text(path, json.dumps(doc, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _sync_tree(directory: Path) -> None:
    """Flush every file before COMPLETE claims they are there."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
