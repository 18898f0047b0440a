"""The training loop: optimizer steps with exact token-weighted loss, eval, checkpoints.

Loss of an optimizer step = (sum of token losses over all its micro-batches on all ranks)
/ (label tokens of the whole step). The step's label-token count is all-reduced before
any backward pass; each micro-batch then back-propagates `summed_loss * W / count`, and
DDP's averaging of gradients over the W ranks cancels the factor W. So a step's gradient
does not depend on how its examples are split into micro-batches or ranks, and long
examples weigh by their tokens, not by their batch. Accelerate's own accumulation is not
used: it divides by the number of micro-batches, which is exactly the bias avoided here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from transformers import get_scheduler

from kubesft.api.job import SFTJobSpec
from kubesft.api.retention import RetentionStatus
from kubesft_trainer import checkpoint, sharding
from kubesft_trainer.checkpoint import Progress
from kubesft_trainer.config import RunPlan
from kubesft_trainer.data import Batch, MicroBatchPlan, collate, step_micro_batches
from kubesft_trainer.eval_sets import (
    EvalSet,
    describe_retention,
    forgetting_stop,
    overall_result,
    retention_status,
    score_sets,
)
from kubesft_trainer.evaluate import EvalResult
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.graded_loss import install_graded_loss
from kubesft_trainer.health import HangWatchdog, Preempted, StopRequest, check_finite
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample
from kubesft_trainer.remote_output import RemoteOutput


@dataclass(frozen=True)
class StepResult:
    """One optimizer step seen from all ranks."""

    loss: float
    label_tokens: int
    tokens: int
    grad_norm: float | None


@dataclass
class Session:
    """Everything the loop drives; built by `train.py`, identical in shape on every rank."""

    spec: SFTJobSpec
    plan: RunPlan
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    attn_implementation: str
    train_examples: Sequence[TokenizedExample]
    micro_batches: MicroBatchPlan
    eval_sets: list[EvalSet]
    """Each member's eval split (`eval_sets`); empty: no eval split."""
    pad_id: int
    output_dir: Path
    retention: EvalSet | None = None
    """`spec.evaluation.retention`: scored at every evaluation, never trained on."""
    by_dataset: bool = False
    """Report each member's eval loss (a mixture, spec.datasets)."""
    reporter: Any = None  # report.Reporter on the main process only
    remote: RemoteOutput | None = None
    """The output's s3 mirror (`spec.output.url`); checkpoints are uploaded as they land."""
    last_eval: EvalResult | None = None
    last_eval_step: int | None = None
    stop: StopRequest = field(default_factory=StopRequest)
    """SIGTERM, acted on at the next step boundary (`health.py`)."""
    watchdog: HangWatchdog | None = None
    """Told each time a step, an evaluation or a checkpoint finishes."""
    stop_message: str | None = None
    """Why the loop stopped early, when the reason is not eval loss (forgetting)."""


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropy over graded tokens (labels != -100), in fp32.

    The reference the training loss (`graded_loss`, which never builds these logits) is
    tested against; evaluation scores with it.
    """
    targets = labels[:, 1:]
    graded = targets != IGNORE_INDEX
    # Select graded positions before upcasting: (N, V) in fp32 instead of (T, V).
    scores = logits[:, :-1][graded].float()
    return functional.cross_entropy(scores, targets[graded], reduction="sum")


def summed_graded_loss(
    model: Any, batch: Batch, attn_implementation: str, device: torch.device
) -> torch.Tensor:
    """Sum of the batch's graded token losses, the LM head applied at graded positions only.

    Installs `graded_loss` on a model loaded without `model.load_model` (tests, tools).
    """
    install_graded_loss(model)
    inputs = _to_device(batch.model_inputs(attn_implementation), device)
    loss: torch.Tensor = model(**inputs, graded_labels=batch.labels.to(device)).loss
    return loss


def backward_step(
    accelerator: Any, model: Any, batches: Sequence[Batch], attn_implementation: str
) -> StepResult:
    """Accumulate the gradient of one optimizer step's loss over its micro-batches."""
    acc = accelerator
    local = torch.tensor(
        [sum(b.num_label_tokens for b in batches), sum(_real_tokens(b) for b in batches)],
        device=acc.device,
    )
    label_tokens, tokens = (int(n) for n in acc.reduce(local, reduction="sum").tolist())
    scale = acc.num_processes / max(label_tokens, 1)
    loss_sum = torch.zeros((), device=acc.device)
    for index, batch in enumerate(batches):
        # Gradients are all-reduced once, on the step's last micro-batch.
        last = index == len(batches) - 1
        with _gradient_sync(acc, model, last):
            summed = summed_graded_loss(model, batch, attn_implementation, acc.device)
            acc.backward(summed * scale)
        loss_sum += summed.detach()
    total = float(acc.reduce(loss_sum, reduction="sum"))
    return StepResult(total / max(label_tokens, 1), label_tokens, tokens, grad_norm=None)


def train_step(session: Session, batches: Sequence[Batch]) -> StepResult:
    """One optimizer step: accumulate, clip, step the optimizer and the schedule."""
    acc = session.accelerator
    result = backward_step(acc, session.model, batches, session.attn_implementation)
    max_norm = session.spec.training.max_grad_norm
    if sharding.is_sharded(session.model):
        norm: Any = sharding.clip_grad_norm(list(session.model.parameters()), max_norm)
    else:
        norm = acc.clip_grad_norm_(session.model.parameters(), max_norm)
    session.optimizer.step()
    if not acc.optimizer_step_was_skipped:  # fp16 overflow: the step did not happen
        session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    return replace(result, grad_norm=float(norm) if norm is not None else None)


def train_loop(session: Session, progress: Progress) -> Progress:
    """Run optimizer steps from `progress` to the plan's end (or early stop)."""
    plan = session.plan
    session.model.train()
    while progress.step < plan.total_steps:
        started = time.perf_counter()
        groups, position = step_micro_batches(
            session.micro_batches, progress.position, plan.gradient_accumulation
        )
        batches = [
            collate(session.train_examples, g, session.spec.training.packing, session.pad_id)
            for g in groups
        ]
        result = train_step(session, batches)
        progress = replace(progress, step=progress.step + 1, position=position, eval_loss=None)
        _report_progress(session, progress.step, result, time.perf_counter() - started)
        fp16 = session.plan.precision.mixed_precision == "fp16"
        check_finite(progress.step, result.loss, result.grad_norm, fp16=fp16)
        if progress.step % plan.eval_every == 0 or progress.step == plan.total_steps:
            progress = _evaluate(session, progress)
        saved = progress.step % plan.checkpoint_every == 0
        if saved:
            _save_checkpoint(session, progress)
        if session.watchdog is not None:
            session.watchdog.beat(progress.step)
        if progress.step < plan.total_steps and session.stop.agreed(session.accelerator):
            if not saved:
                _save_checkpoint(session, progress)
            raise Preempted(
                f"stopped by SIGTERM after step {progress.step}, checkpoint written; "
                f"the next pod resumes at step {progress.step + 1}",
                step=progress.step,
            )
        if _should_stop_early(session, progress):
            break
    return progress


def evaluate_all_ranks(session: Session) -> EvalResult | None:
    """Eval metrics over every member's eval split: each rank scores its share, sums are
    reduced (`eval_sets`); None without an eval split."""
    result, _ = evaluate_with_retention(session, step=None, loss_before=None)
    return result


def evaluate_with_retention(
    session: Session, *, step: int | None, loss_before: float | None
) -> tuple[EvalResult | None, RetentionStatus | None]:
    """The eval sets' metrics and, when `step` is given, the retention set's status at it
    (`loss_before` None at step 0, where this is the before), in one all-reduce."""
    retention = session.retention if step is not None else None
    sets = [*session.eval_sets, *([retention] if retention is not None else [])]
    if not sets:
        return None, None
    model = session.accelerator.unwrap_model(session.model)
    sums = score_sets(session.accelerator, model, sets, session.attn_implementation, session.pad_id)
    count = len(session.eval_sets)
    names = [s.name for s in session.eval_sets]
    result = overall_result(names, sums[:count], by_dataset=session.by_dataset) if count else None
    status = None
    if retention is not None and step is not None:
        scored = EvalResult.from_sums(*sums[count])
        status = retention_status(retention.name, scored, step=step, loss_before=loss_before)
    return result, status


def _gradient_sync(acc: Any, model: Any, enabled: bool) -> Any:
    """Gradients are reduced once per step, on its last micro-batch (DDP and FSDP)."""
    if enabled:
        return nullcontext()
    if sharding.is_sharded(model):
        return sharding.gradient_sync(model, enabled=False)
    return acc.no_sync(model)


def evaluate_before(session: Session, progress: Progress) -> Progress:
    """Score the eval splits and the retention set before the first step; the retention
    loss before training goes into the progress that every checkpoint keeps."""
    result, retention = evaluate_with_retention(session, step=0, loss_before=None)
    if session.reporter is not None and (result is not None or retention is not None):
        session.reporter.eval(0, result, retention)
    if retention is None:
        return progress
    if session.reporter is not None:
        print(describe_retention(retention), flush=True)
    return replace(progress, retention_loss_before=retention.loss_before)


def _evaluate(session: Session, progress: Progress) -> Progress:
    """Evaluate (the retention set too) and update the early-stopping counters."""
    result, retention = evaluate_with_retention(
        session, step=progress.step, loss_before=progress.retention_loss_before
    )
    if result is None and retention is None:
        return progress
    if session.watchdog is not None:
        session.watchdog.beat(progress.step)
    if session.reporter is not None:
        session.reporter.eval(progress.step, result, retention)
        if retention is not None:
            print(describe_retention(retention), flush=True)
    session.stop_message = forgetting_stop(session.spec, retention)
    if result is None:
        return progress
    session.last_eval, session.last_eval_step = result, progress.step
    stopping = session.spec.training.early_stopping
    min_delta = stopping.min_delta if stopping is not None else 0.0
    best = progress.best_eval_loss
    improved = best is None or result.loss < best - min_delta
    return replace(
        progress,
        eval_loss=result.loss,
        best_eval_loss=result.loss if best is None else min(best, result.loss),
        evals_without_improvement=0 if improved else progress.evals_without_improvement + 1,
    )


def _should_stop_early(session: Session, progress: Progress) -> bool:
    if session.stop_message is not None:  # forgetting (retention.earlyStop)
        return True
    stopping = session.spec.training.early_stopping
    return stopping is not None and progress.evals_without_improvement >= stopping.patience


def _report_progress(session: Session, step: int, result: StepResult, seconds: float) -> None:
    if session.reporter is None:
        return
    session.reporter.progress(
        step=step,
        total_steps=session.plan.total_steps,
        epoch=session.plan.epoch_at(step),
        tokens_per_second=result.tokens / seconds if seconds > 0 else 0.0,
        train_loss=result.loss,
        learning_rate=session.scheduler.get_last_lr()[0],
        grad_norm=result.grad_norm,
        gpu_memory_gib=_peak_gpu_memory_gib(session.accelerator.device),
    )


def _peak_gpu_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1024**3, 2)


def _save_checkpoint(session: Session, progress: Progress) -> None:
    kept = session.spec.checkpoints
    record = checkpoint.save_checkpoint(
        session.accelerator,
        session.model,
        session.optimizer,
        session.scheduler,
        session.output_dir,
        progress,
        keep=kept.keep,
        keep_best=kept.keep_best,
    )
    if session.reporter is None:  # not the main process
        return
    output_dir, remote = session.output_dir, session.remote
    on_disk = [r.path for r in checkpoint.list_checkpoints(output_dir)]
    if remote is None:
        session.reporter.checkpoint(record.step, record.path, record.eval_loss, kept=on_disk)
        return
    remote.upload_checkpoint(record.path, output_dir)
    session.reporter.checkpoint(
        record.step,
        remote.url_of(record.path, output_dir),
        record.eval_loss,
        kept=[remote.url_of(path, output_dir) for path in on_disk],
    )
    remote.upload_resume_files(output_dir)  # the checkpoint's record included


def build_optimizer(model: Any, spec: SFTJobSpec, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW (or 8-bit AdamW, or SGD) over trainable weights; no decay on biases and norms."""
    training = spec.training
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": training.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if training.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate)
    if training.optimizer == "adamw_8bit":
        if not torch.cuda.is_available():
            raise UserError(
                "spec.training.optimizer adamw_8bit needs a CUDA GPU (bitsandbytes); "
                "use adamw on CPU-only nodes"
            )
        import bitsandbytes

        optimizers: Any = bitsandbytes.optim
        return optimizers.AdamW8bit(groups, lr=learning_rate)  # type: ignore[no-any-return]
    # The same update in one kernel per step: 2.5x faster than torch's CPU default, a loop
    # of small ops per tensor (bench/fix_before_after.py), and torch's fastest on GPU.
    return torch.optim.AdamW(groups, lr=learning_rate, fused=True)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: SFTJobSpec, plan: RunPlan) -> Any:
    """Learning-rate schedule over the planned steps (warmup, then cosine/linear/constant)."""
    return get_scheduler(
        spec.training.scheduler,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )


def _real_tokens(batch: Batch) -> int:
    mask = getattr(batch, "attention_mask", None)
    return int(mask.sum()) if mask is not None else int(batch.input_ids.numel())


def _to_device(inputs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
