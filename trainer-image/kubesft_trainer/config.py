"""The trainer's input file and the run plan derived from it.

`load_config` turns the JSON the operator mounts into a `TrainerConfig` (errors name the
field). `plan_run` turns the spec, the size of the prepared data and the world size into
plain numbers the loop uses: steps, accumulation, cadences and precision.

Precision on CPU: bf16 is allowed (torch autocasts to bfloat16 on any CPU, slowly but
correctly), so the default spec also runs in CPU-only tests and clusters; fp16 is refused
because its loss scaler needs a GPU. On a GPU without bfloat16 (before Ampere) bf16 is
refused with the fix (use fp16).

This module imports neither torch nor transformers, so a bad config fails in a second.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from kubesft.api.errors import InvalidSpec, validate_model
from kubesft.api.job import SFTJobSpec
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.paths import check_paths

MixedPrecision = str  # accelerate's names: "no", "bf16", "fp16"

HALF_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class Precision:
    """How tensors are stored and computed.

    `weights_dtype` is the dtype weights are loaded in: the frozen base of lora/qlora is
    stored in half precision to save memory, while full fine-tuning keeps fp32 master
    weights and lets autocast (`mixed_precision`) run the matmuls in half precision.
    """

    mixed_precision: MixedPrecision
    weights_dtype: str


@dataclass(frozen=True)
class RunPlan:
    """Numbers of the run, all derived once; every rank computes the same plan."""

    world_size: int
    micro_batch_size: int
    gradient_accumulation: int
    micro_batches_per_epoch: int
    """Micro-batches each rank runs per epoch (the same on every rank)."""
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_every: int
    checkpoint_every: int
    learning_rate: float
    precision: Precision

    def epoch_at(self, step: int) -> float:
        """Epochs done after `step` optimizer steps (fractional)."""
        return step / self.steps_per_epoch


def load_config(path: Path) -> TrainerConfig:
    """The `TrainerConfig` in `path`; a bad file or field, or a PVC path that leaves its
    volume (`paths.check_paths`), is a UserError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read --config {path}: {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"--config {path} is not valid JSON: {err}") from None
    try:
        config: TrainerConfig = validate_model(TrainerConfig, data)
    except InvalidSpec as err:
        raise UserError(f"invalid trainer config: {err}") from None
    check_paths(config)
    return config


def resolve_precision(spec: SFTJobSpec, *, cuda: bool, bf16_supported: bool) -> Precision:
    """Storage and compute dtypes for `spec.training.precision` on this machine."""
    precision = spec.training.precision
    if precision == "fp32":
        return Precision("no", "float32")
    if precision == "fp16" and not cuda:
        raise UserError(
            "spec.training.precision: fp16 needs a CUDA GPU (its loss scaler does not run on "
            "CPU); use bf16 or fp32 on CPU-only nodes"
        )
    if precision == "bf16" and cuda and not bf16_supported:
        raise UserError(
            "spec.training.precision: bf16 needs a GPU with bfloat16 support (Ampere or newer); "
            "this GPU has none, set precision to fp16"
        )
    half = HALF_DTYPES[precision]
    return Precision(precision, "float32" if spec.method.type == "full" else half)


def gradient_accumulation(
    spec: SFTJobSpec, *, tokens_per_micro_batch: float, world_size: int
) -> int:
    """Micro-batches per optimizer step, from globalBatchTokens when the user set it."""
    training = spec.training
    if not training.given("global_batch_tokens") or training.global_batch_tokens is None:
        return training.gradient_accumulation
    per_round = max(tokens_per_micro_batch, 1.0) * world_size
    return max(1, round(training.global_batch_tokens / per_round))


def plan_run(
    spec: SFTJobSpec,
    *,
    micro_batches_per_epoch: int,
    tokens_per_micro_batch: float,
    world_size: int,
    precision: Precision,
) -> RunPlan:
    """Steps and cadences; `micro_batches_per_epoch` is per rank (see `data.epoch_plan`)."""
    if micro_batches_per_epoch < 1:
        raise UserError("the training split has no usable examples; check the SFTDataset")
    accumulation = gradient_accumulation(
        spec, tokens_per_micro_batch=tokens_per_micro_batch, world_size=world_size
    )
    steps_per_epoch = math.ceil(micro_batches_per_epoch / accumulation)
    training = spec.training
    if training.max_steps is not None:
        total_steps = training.max_steps
    else:
        total_steps = max(1, math.ceil(training.epochs * steps_per_epoch))
    checkpoint_every = spec.checkpoints.every_steps
    return RunPlan(
        world_size=world_size,
        micro_batch_size=training.micro_batch_size,
        gradient_accumulation=accumulation,
        micro_batches_per_epoch=micro_batches_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=math.ceil(training.warmup_ratio * total_steps),
        eval_every=spec.evaluation.every_steps or checkpoint_every,
        checkpoint_every=checkpoint_every,
        learning_rate=spec.learning_rate,
        precision=precision,
    )
