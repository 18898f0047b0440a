"""Collate tokenized examples into model batches: one flattened packed row, or padded rows.

Packed attention stays inside each example without a materialized mask of ours: with
`attention_mask=None`, `position_ids` that restart at 0 and no KV cache, transformers 5.x
(`masking_utils.find_packed_sequence_indices`) builds a block-diagonal causal mask for
sdpa and eager, and flash-attention takes the varlen `cu_seq_lens_*` kwargs, as does
kubesft's own packed SDPA (`attention.py`, what `sdpa` loads as). The cache
matters: `use_cache=True` (the config default) creates an empty `DynamicCache`, which
switches packed-sequence detection off, so `model_inputs` always sends `use_cache=False`.
`tests/trainer/test_collate_attention.py` pins this against solo runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kubesft_trainer.attention import PACKED_SDPA
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")
VARLEN_IMPLEMENTATIONS = (*FLASH_IMPLEMENTATIONS, PACKED_SDPA)
"""Attention that takes per-example offsets (`cu_seq_lens_*`) instead of a packed mask."""


@dataclass(frozen=True)
class PackedBatch:
    """Examples of a micro-batch concatenated into one row of shape (1, T)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    cu_seq_lens: torch.Tensor  # (n + 1,) int32 offsets of example starts, then T
    seq_lens: torch.Tensor  # (n,) lengths of the examples
    max_length: int

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def model_inputs(self, attn_implementation: str) -> dict[str, Any]:
        """Keyword arguments for the model's forward (labels stay out; the loop owns the loss)."""
        inputs: dict[str, Any] = {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "use_cache": False,
        }
        if attn_implementation in VARLEN_IMPLEMENTATIONS:
            inputs |= {
                "cu_seq_lens_q": self.cu_seq_lens,
                "cu_seq_lens_k": self.cu_seq_lens,
                "max_length_q": self.max_length,
                "max_length_k": self.max_length,
            }
        return inputs


@dataclass(frozen=True)
class PaddedBatch:
    """Examples right-padded to a common length, shape (B, T)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def model_inputs(self, attn_implementation: str) -> dict[str, Any]:
        """Keyword arguments for the model's forward (labels stay out; the loop owns the loss)."""
        del attn_implementation  # padding masks work the same for every implementation
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "use_cache": False,
        }


def collate_packed(examples: Sequence[TokenizedExample]) -> PackedBatch:
    """Flatten the examples of a micro-batch's bins, in order, into one packed row."""
    if not examples:
        raise ValueError("cannot collate an empty micro-batch")
    if any(len(example) == 0 for example in examples):
        raise ValueError("cannot collate an empty example")
    lengths = [len(example) for example in examples]
    input_ids = torch.tensor([t for example in examples for t in example.input_ids])
    labels = torch.tensor([t for example in examples for t in example.labels])
    position_ids = torch.cat([torch.arange(length) for length in lengths])
    cu_seq_lens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu_seq_lens[1:] = torch.cumsum(torch.tensor(lengths), 0)
    # The logit at an example's last token would predict the next example's first token.
    labels[cu_seq_lens[:-1].long()] = IGNORE_INDEX
    return PackedBatch(
        input_ids=input_ids.unsqueeze(0),
        labels=labels.unsqueeze(0),
        position_ids=position_ids.unsqueeze(0),
        cu_seq_lens=cu_seq_lens,
        seq_lens=torch.tensor(lengths),
        max_length=max(lengths),
    )


def collate_padded(
    examples: Sequence[TokenizedExample], pad_token_id: int, pad_to_multiple_of: int = 1
) -> PaddedBatch:
    """Right-pad examples for `packing: false`; padding is masked out and never graded."""
    if not examples:
        raise ValueError("cannot collate an empty micro-batch")
    longest = max(len(example) for example in examples)
    width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(examples), width), pad_token_id)
    labels = torch.full((len(examples), width), IGNORE_INDEX)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention_mask[row, :length] = 1
    labels[:, 0] = IGNORE_INDEX
    return PaddedBatch(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
