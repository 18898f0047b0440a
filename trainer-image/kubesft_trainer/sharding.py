"""FSDP2 for full fine-tuning on several GPUs: shard, step, checkpoint, consolidate.

`kubesft.sizing.resolve_strategy` decides (spec.training.parallelism; auto = fsdp for
method full on more than one GPU). Then every decoder layer and the root module are
`fully_shard`ed (torch.distributed.fsdp, FSDP2) over all ranks: each rank keeps 1/W of
the fp32 weights, their gradients and AdamW's states; a layer's weights are gathered
(in bf16 under `precision: bf16`) just before it runs and freed after, gradients are
reduce-scattered in fp32. Gradient sync of the micro-batches before a step's last is
skipped, as under DDP, and the loss scale of `loop.backward_step` holds unchanged: FSDP
averages gradients over ranks as DDP does.

torch directly, not accelerate's FSDP plugin: accelerate turns the plugin on only for
multi-accelerator process groups (`accelerate/state.py` leaves MULTI_CPU out), so the
same code could not be proven on CPU/gloo, and the loop already drives accumulation,
loss scaling, clipping and checkpoints itself; the plugin would only wrap `fully_shard`.

Checkpoints are `torch.distributed.checkpoint` (DCP) folders: every rank writes its
shards, and DCP re-shards on load, so a run resumes on the same or another number of
GPUs. The final model is gathered once into a full state dict on rank 0 and saved as
safetensors.

LoRA and QLoRA stay data-parallel: their trainable state is a few MB, a replica costs
nothing worth sharding, and bitsandbytes' 4-bit weights do not shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from kubesft import sizing
from kubesft.api.job import SFTJobSpec

SHARDED_DIR = "sharded"
"""Checkpoint subfolder holding the DCP shards of model and optimizer."""


def strategy(spec: SFTJobSpec, world_size: int) -> sizing.Strategy:
    """ddp or fsdp for this run (the rule lives in `kubesft.sizing`)."""
    return sizing.resolve_strategy(spec.training.parallelism, spec.method.type, world_size)


def is_sharded(model: Any) -> bool:
    return isinstance(model, FSDPModule)


def shard_model(model: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
    """fully_shard each decoder layer, then the root (embeddings, final norm, head).

    Decoder layers are the modules transformers names in `_no_split_modules`. Weights stay
    fp32 in their shards; `compute_dtype` is what layers are gathered and run in.
    """
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    layer_types = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_types]
    if not layers:
        raise RuntimeError(
            f"{type(model).__name__} names no decoder layer class (_no_split_modules); "
            "set spec.training.parallelism ddp"
        )
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


@contextmanager
def gradient_sync(model: Any, enabled: bool) -> Iterator[None]:
    """Skip the reduce-scatter on micro-batches before a step's last (DDP's no_sync)."""
    model.set_requires_gradient_sync(enabled)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> float:
    """Clip sharded gradients to a total norm over all ranks; returns the norm before."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return float(norm)


def torch_optimizer(optimizer: Any) -> Any:
    """The torch optimizer under accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def save_sharded(model: nn.Module, optimizer: Any, directory: Path) -> None:
    """Every rank writes its shards of weights and optimizer state (collective).

    A replicated model (DDP, one process) writes the same format, de-duplicated by DCP,
    so checkpoints move between strategies and world sizes.
    """
    model_state, optimizer_state = get_state_dict(model, torch_optimizer(optimizer))
    dcp_save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=directory)


def load_sharded(model: nn.Module, optimizer: Any, directory: Path) -> None:
    """Load `save_sharded`'s folder, re-sharded for this world size (collective)."""
    optimizer = torch_optimizer(optimizer)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp_load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def full_state_dict(model: nn.Module) -> dict[str, Any]:
    """The whole model's weights on rank 0's CPU (empty elsewhere); collective."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return dict(get_model_state_dict(model, options=options))
