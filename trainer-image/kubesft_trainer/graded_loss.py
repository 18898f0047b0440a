"""The training loss without the whole (tokens x vocabulary) logits.

`install_graded_loss(model)` gives a causal LM a second forward mode:
`model(**inputs, graded_labels=labels)` runs the model body, keeps the hidden states of
the positions whose next token is graded (labels != -100), and applies the LM head and
cross-entropy to those rows only, in chunks of `sizing.loss_chunk_rows` rows. It returns the
*summed* token loss (fp32) as `.loss`; `.logits` is None. Without `graded_labels` the
forward is the model's own, so evaluation and generation are unchanged.

Why: the logits are the largest activation of a step (2048 x 151,936 in bf16 is 0.6 GiB
per micro-batch, and its gradient again), and prompt tokens, never graded, still paid
for the head. Here the head costs 3 matmuls over the graded rows only, and the largest
loss buffer is one chunk's fp32 logits and their gradient (2 x chunk_rows x V x 4 bytes).

The loss is computed inside the model's forward (as TRL's `add_fused_lm_head` does) so
DDP and FSDP wrap it like any forward: the head's weight is gathered and its gradient
reduced by them. For a plain `nn.Linear` head the gradient of each chunk is computed in
the forward pass (`_LinearCrossEntropy`, the fused-linear-cross-entropy scheme of Liger
kernels), so nothing is recomputed; a head wrapped by peft (LoRA on `lm_head`,
`modules_to_save`) is called as a module per chunk under activation checkpointing.
Liger's Triton kernel is used instead on CUDA when `liger-kernel` is importable.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import types
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutputWithPast

from kubesft import sizing

IGNORE_INDEX = -100
INSTALLED = "_kubesft_graded_loss"
"""Attribute set on a model whose forward takes `graded_labels`."""


def causal_lm(model: Any) -> Any:
    """The transformers causal LM under DDP/FSDP/accelerate and peft wrappers."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return inner


def install_graded_loss(model: Any) -> Any:
    """Add the `graded_labels=` forward mode to a causal LM (idempotent); returns the model.

    Install before peft wraps the model and before accelerate prepares it: accelerate's
    autocast wraps whatever `forward` is then, this one included.
    """
    target = causal_lm(model)
    if getattr(target, INSTALLED, False):
        return model
    original = target.forward

    @functools.wraps(type(target).forward)  # generate() checks kwargs against the signature
    def forward(self: Any, *args: Any, graded_labels: Any = None, **kwargs: Any) -> Any:
        if graded_labels is None:
            return original(*args, **kwargs)
        return _graded_forward(self, graded_labels, *args, **kwargs)

    target.forward = types.MethodType(forward, target)
    setattr(target, INSTALLED, True)
    return model


def _graded_forward(model: Any, graded_labels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    kwargs.pop("labels", None)  # peft passes labels=None along
    kwargs["use_cache"] = False
    body = model.base_model(*args, **kwargs)
    head = model.get_output_embeddings()
    hidden = body.last_hidden_state
    targets = graded_labels.to(hidden.device)[:, 1:]
    graded = targets != IGNORE_INDEX
    rows, wanted = hidden[:, :-1][graded], targets[graded]
    config = _text_config(model)
    softcap = getattr(config, "final_logit_softcapping", None)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    loss = summed_head_loss(head, rows, wanted, _logit_scale(model), softcap, vocab)
    return CausalLMOutputWithPast(loss=loss, logits=None)


def summed_head_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    scale: float = 1.0,
    softcap: float | None = None,
    vocab_size: int = 0,
) -> torch.Tensor:
    """Sum of cross-entropy of the logits `head(hidden)` against `targets`, in fp32, chunked.

    hidden: (N, D); targets: (N,) token ids, none ignored. The logits are multiplied by
    `scale` and soft-capped at `softcap` (Gemma 2) as the model's own forward does.
    `vocab_size` sizes the chunks of a head that is not a plain `nn.Linear`.
    Returns a 0-d fp32 tensor.
    """
    if type(head) is nn.Linear and scale == 1.0 and softcap is None:
        weight, bias = _full(head.weight), _full(head.bias)
        if hidden.is_cuda and _liger_available():
            return _liger_loss(hidden, weight, bias, targets)
        rows = sizing.loss_chunk_rows(weight.shape[0])
        loss: torch.Tensor = _LinearCrossEntropy.apply(hidden, weight, bias, targets, rows)
        return loss
    rows = sizing.loss_chunk_rows(vocab_size or int(getattr(head, "out_features", 0)))
    return _checkpointed_chunks(head, hidden, targets, scale, softcap, rows)


def _checkpointed_chunks(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    scale: float,
    softcap: float | None,
    rows: int,
) -> torch.Tensor:
    """Any head module: each chunk's logits are recomputed in backward instead of kept."""

    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = head(h) * scale
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return nn.functional.cross_entropy(logits.float(), t, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    if hidden.shape[0] == 0:  # keep the graph connected: DDP expects every gradient
        return total + 0.0 * hidden.sum()
    for start in range(0, hidden.shape[0], rows):
        end = start + rows
        piece = checkpoint(chunk_loss, hidden[start:end], targets[start:end], use_reentrant=False)
        total = total + piece
    return total


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T + bias`, gradients computed chunk by chunk.

    Matches autograd through `functional.linear(...).float()` then `cross_entropy`: the
    logits are computed in the compute dtype (the autocast dtype, else the weight's),
    softmax and loss in fp32, the logits' gradient cast back before the two matmuls.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        rows: int,
    ) -> torch.Tensor:
        device = hidden.device.type
        dtype = (
            torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        )
        need_h, need_w = ctx.needs_input_grad[:2]
        need_b = bias is not None and ctx.needs_input_grad[2]
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            grad_h = torch.zeros_like(hidden) if need_h else None
            grad_w = torch.zeros_like(weight) if need_w else None
            grad_b = torch.zeros_like(bias) if need_b and bias is not None else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], rows):
                h = hidden[start : start + rows].to(dtype)
                t = targets[start : start + rows]
                logits = nn.functional.linear(h, w, b).float()
                lse = torch.logsumexp(logits, dim=-1)
                loss += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                if not (need_h or need_w or need_b):
                    continue
                # d(sum CE)/d logits = softmax - one-hot, in place over the logits.
                grad = logits.sub_(lse[:, None]).exp_()
                grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
                grad = grad.to(dtype)
                if grad_h is not None:
                    grad_h[start : start + rows] = grad @ w
                if grad_w is not None:
                    grad_w.addmm_(grad.t().to(grad_w.dtype), h.to(grad_w.dtype))
                if grad_b is not None:
                    grad_b += grad.sum(0).to(grad_b.dtype)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> Any:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scaled = [None if g is None else g * grad_loss.to(g.dtype) for g in (grad_h, grad_w)]
        bias = None if grad_b is None else grad_b * grad_loss.to(grad_b.dtype)
        return scaled[0], scaled[1], bias, None, None


def _full(tensor: torch.Tensor | None) -> Any:
    """An FSDP2 head outside an unsharded scope holds DTensor shards; gather them."""
    if tensor is not None and hasattr(tensor, "full_tensor"):
        return tensor.full_tensor()
    return tensor


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _logit_scale(model: Any) -> float:
    """Models that scale logits before the loss (Cohere's `logit_scale`) stay correct."""
    scale = getattr(_text_config(model), "logit_scale", None)
    return 1.0 if scale is None else float(scale)


@functools.cache
def _liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def _liger_loss(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    """Liger's fused linear cross-entropy (Triton, CUDA only): the same sum, in one kernel.

    Through its loss module, whose `forward(weight, input, target, bias)` has been stable
    across liger-kernel releases; not exercised without a GPU.
    """
    liger = importlib.import_module("liger_kernel.transformers.fused_linear_cross_entropy")
    loss_fn = liger.LigerFusedLinearCrossEntropyLoss(reduction="sum")
    loss: torch.Tensor = loss_fn(weight, hidden, targets, bias)
    return loss.float()
