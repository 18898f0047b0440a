"""What the memory model needs to know of a decoder: its shape, read or guessed.

`ModelShape.from_config` reads a transformers config (the trainer); `ModelShape.guess`
infers a Llama-family shape from the size in a model's name (the operator, before any
weights are reachable). `lora_param_count` sizes peft adapters on such a shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_SIZE = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs of a decoder; from its config, or guessed from a name."""

    params: int
    hidden_size: int
    num_layers: int
    vocab_size: int = 0
    """0 when unknown: the loss and the FSDP root unit are then left out."""
    tied_embeddings: bool = False
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None

    def kv_size(self) -> int | None:
        """Width of the key (and value) projection; None when the heads are unknown."""
        if not self.num_attention_heads:
            return None
        head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        return (self.num_key_value_heads or self.num_attention_heads) * head_dim

    @classmethod
    def guess(cls, name: str) -> ModelShape | None:
        """A Llama-family shape from a size in the name (`Llama-3.1-8B`), else None."""
        params = params_from_name(name)
        if params is None:
            return None
        hidden = hidden_size_guess(params)
        return cls(params, hidden, layers_guess(params, hidden))

    @classmethod
    def from_config(cls, config: Any, params: int) -> ModelShape:
        """From a transformers config (read by attribute) and the counted parameters."""

        def optional(name: str) -> int | None:
            value = getattr(config, name, None)
            return int(value) if value else None

        return cls(
            params=params,
            hidden_size=int(config.hidden_size),
            num_layers=int(config.num_hidden_layers),
            vocab_size=optional("vocab_size") or 0,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            num_attention_heads=optional("num_attention_heads"),
            num_key_value_heads=optional("num_key_value_heads"),
            head_dim=optional("head_dim"),
            intermediate_size=optional("intermediate_size"),
        )


def params_from_name(name: str) -> int | None:
    """`meta-llama/Llama-3.1-8B-Instruct` → 8e9; `SmolLM2-135M` → 1.35e8; else None."""
    matches = _SIZE.findall(name.rsplit("/", 1)[-1])
    if not matches:
        return None
    number, unit = matches[-1]
    return int(float(number) * (1e9 if unit.lower() == "b" else 1e6))


def hidden_size_guess(params: int) -> int:
    """A dense decoder's width from its size (Llama family: 1B→2048, 8B→4096, 70B→8192)."""
    return int(min(16384, max(512, (params / 5e8) ** 0.5 * 1024)))


def layers_guess(params: int, hidden_size: int) -> int:
    """A dense decoder's depth from its size and width (~12 h² parameters per layer)."""
    return max(1, round(params / (12 * hidden_size * hidden_size)))


def lora_param_count(
    *,
    r: int,
    target_modules: Sequence[str],
    hidden_size: int,
    num_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int | None = None,
    head_dim: int | None = None,
    intermediate_size: int | None = None,
) -> int:
    """Adapter parameters: r * (in + out) for each adapted linear layer of a Llama-style block.

    Target names it cannot size are counted as `all-linear`, an upper bound.
    """
    head_dim = head_dim or hidden_size // num_attention_heads
    attention = num_attention_heads * head_dim
    kv = (num_key_value_heads or num_attention_heads) * head_dim
    inter = intermediate_size or 4 * hidden_size
    shapes = {
        "q_proj": (hidden_size, attention),
        "k_proj": (hidden_size, kv),
        "v_proj": (hidden_size, kv),
        "o_proj": (attention, hidden_size),
        "gate_proj": (hidden_size, inter),
        "up_proj": (hidden_size, inter),
        "down_proj": (inter, hidden_size),
    }
    chosen = [name for name in LORA_MODULES if any(t.endswith(name) for t in target_modules)]
    if "all-linear" in target_modules or not chosen:
        chosen = list(LORA_MODULES)
    return sum(r * sum(shapes[name]) for name in chosen) * num_layers
