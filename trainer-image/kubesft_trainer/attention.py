"""SDPA over packed rows one example at a time: no block-diagonal mask, no masked-out work.

transformers' `sdpa` on a packed row builds a (T x T) block-diagonal causal mask and
computes every score, across examples too, before masking them out; with a mask SDPA
also leaves its causal fast path. `packed_sdpa` (registered with transformers'
`AttentionInterface` as `PACKED_SDPA`) instead runs causal SDPA on each example's slice
of the row, as flash-attention's varlen kernel does on GPUs, when the batch carries
`cu_seq_lens_q` (packed batches, see `collate.PackedBatch.model_inputs`). Anything else
(padded batches, generation with a KV cache) goes to transformers' own `sdpa` with its
mask. Measured on CPU, a 4-layer model on 1024-token rows of ~4 examples: forward and
backward of the body 0.50 s -> 0.33 s, outputs equal to 2e-6.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.nn import functional
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

PACKED_SDPA = "kubesft_packed_sdpa"
"""The attention implementation name models are loaded with when `sdpa` is asked for."""


def packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of (B, H, T, D) projections; causal per example when the row is packed.

    Returns (B, T, H, D) like transformers' attention functions.
    """
    offsets = kwargs.get("cu_seq_lens_q")
    if offsets is None or query.shape[0] != 1 or query.shape[2] == 1:
        output, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
        return output, None
    groups = getattr(module, "num_key_value_groups", 1)
    bounds = offsets.tolist()
    pieces = [
        functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout if module.training else 0.0,
            is_causal=True,
            scale=scaling,
            enable_gqa=groups > 1,
        )
        for start, end in itertools.pairwise(bounds)
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register_packed_sdpa() -> str:
    """Make `PACKED_SDPA` loadable as an `attn_implementation` (idempotent); returns it."""
    AttentionInterface.register(PACKED_SDPA, packed_sdpa)
    AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA
