"""NEFTune: uniform noise on input embeddings during training (Jain et al., 2023).

The noise bound is alpha / sqrt(L * d) with L the example's own length. In a packed row
the embedding layer sees one long sequence, so a pre-hook on the model records
`position_ids` (or the padding mask) of each forward and the embedding hook derives every
token's example length from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@dataclass
class NeftuneHandle:
    """Active NEFTune hooks; `remove()` (or leaving the `with` block) restores clean embeddings."""

    alpha: float
    handles: list[RemovableHandle] = field(default_factory=list)
    position_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.position_ids = self.attention_mask = None

    def __enter__(self) -> NeftuneHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


def activate_neftune(model: nn.Module, alpha: float) -> NeftuneHandle:
    """Add noise to `model.get_input_embeddings()` outputs while that module is training."""
    if alpha <= 0:
        raise ValueError(f"spec.training.neftuneAlpha must be > 0 (got {alpha})")
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    handle = NeftuneHandle(alpha=alpha)

    def record_inputs(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        handle.position_ids = kwargs.get("position_ids")
        handle.attention_mask = kwargs.get("attention_mask")

    def forget_inputs(*_: Any) -> None:
        handle.position_ids = handle.attention_mask = None

    def add_noise(module: nn.Module, _: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        lengths = example_lengths(output.shape[:2], handle.position_ids, handle.attention_mask)
        bound = alpha / torch.sqrt(lengths.to(output.device, torch.float32) * output.shape[-1])
        noise = torch.empty_like(output).uniform_(-1, 1)
        return output + noise * bound.unsqueeze(-1).to(output.dtype)

    handle.handles = [
        model.register_forward_pre_hook(record_inputs, with_kwargs=True),
        model.register_forward_hook(forget_inputs),
        embeddings.register_forward_hook(add_noise),
    ]
    return handle


def example_lengths(
    shape: torch.Size | tuple[int, ...],
    position_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Per-token length of the example each token belongs to, shape (B, T).

    Packed rows split where `position_ids` do not step by one (as transformers detects
    packing); padded rows use their count of real tokens; otherwise the row is one example.
    """
    batch, width = int(shape[0]), int(shape[1])
    if position_ids is not None and position_ids.shape[-1] == width:
        positions = position_ids.expand(batch, width)
        starts = torch.ones_like(positions, dtype=torch.bool)
        starts[:, 1:] = positions[:, 1:] - positions[:, :-1] != 1
        segment = starts.long().cumsum(-1) - 1  # example index inside each row
        counts = torch.zeros(batch, width, dtype=torch.long, device=positions.device)
        counts.scatter_add_(1, segment, torch.ones_like(segment))
        return counts.gather(1, segment)
    if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape == shape:
        real = attention_mask.long().sum(-1, keepdim=True).clamp(min=1)
        return real.expand(batch, width)
    return torch.full((batch, width), width, dtype=torch.long)


def noise_bound(alpha: float, length: int, hidden_size: int) -> float:
    """Largest absolute noise NEFTune adds to one embedding value."""
    return alpha / math.sqrt(length * hidden_size)
