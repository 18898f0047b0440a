"""GPU memory estimates for fine-tuning: the one estimator of the operator and the trainer.

Pure arithmetic, no torch. The operator uses it for the Feasible condition before any GPU
pod exists (size and shape guessed from the model's name), the trainer for its preflight
report (size and shape read from the model's config).

Per GPU, in GiB, the sum of:
- weights: parameters x bytes per dtype (fp32 4, bf16/fp16 2); 4-bit bases (QLoRA) pay
  0.5 byte per quantized parameter plus the quantization constants (fp32 absmax per
  64-block = 0.0625 B; with double quantization 8-bit absmax + fp32 per 256 of them =
  0.0159 B), embeddings and the output head stay in the compute dtype; LoRA adapters are
  fp32 (peft upcasts adapters of a 16-bit base);
- gradients: trainable parameters only, in their own dtype;
- optimizer states: AdamW keeps fp32 m and v (8 B per trainable parameter), 8-bit AdamW
  2 B, SGD without momentum 0; full fine-tuning in bf16/fp16 is counted as mixed
  precision, with a 4 B fp32 master copy (ZeRO's 16 B per parameter in all);
- activations: per layer s*b*h*34 bytes at 16 bits (Korthikanti et al. 2022, eq. 1,
  without the 5*a*s/h attention-score term that flash/SDPA attention never stores);
  with gradient checkpointing each layer keeps only its 2*s*b*h-byte input and one layer
  is recomputed at a time; plus the logits, b*s*V in the compute dtype and an fp32 copy
  and gradient for the loss;
- overhead: ~1 GiB of CUDA context and 10 % of the rest for allocator fragmentation.
With `shards` > 1 (fully sharded data parallel) weights, gradients and optimizer states
are split across the GPUs; activations are not. It is a rough, slightly pessimistic
guide, not a promise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

GIB = 1024**3
DTYPE_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
}
"""Bytes per value, under the spec's names and torch's."""
NF4_BYTES = 0.5
QUANT_CONSTANT_BYTES = {True: 8 / 64 / 8 + 32 / (64 * 256) / 8, False: 32 / 64 / 8}
"""Bytes per 4-bit parameter for block constants, keyed by double quantization."""
ADAPTER_BYTES = 4.0
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw_8bit": 2.0, "sgd": 0.0}
MASTER_WEIGHT_BYTES = 4.0
ACTIVATION_BYTES_PER_LAYER = 34
"""s*b*h multiples kept per layer at 16 bits without recomputation (Korthikanti et al.)."""
CHECKPOINTED_BYTES_PER_LAYER = 2
LOSS_BYTES_PER_LOGIT = 8.0
"""An fp32 copy of each logit for the loss and its fp32 gradient."""
CUDA_CONTEXT_GIB = 1.0
FRAGMENTATION = 0.10
DEFAULT_LORA_FRACTION = 0.005
"""Adapter size when unknown: r=16 on every linear layer of a Llama is ~0.5 % of its base."""
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_SIZE = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory of each part, in GiB, and the parameters that train."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    trainable_params: int = 0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def as_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in asdict(self).items()}, "total": round(self.total, 2)}


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


def estimate_memory(
    *,
    params: int,
    method: str,
    precision: str,
    micro_batch_size: int,
    max_seq_length: int,
    hidden_size: int,
    num_layers: int,
    gradient_checkpointing: bool,
    lora_params: int = 0,
    optimizer: str = "adamw",
    shards: int = 1,
    vocab_size: int = 0,
    tied_embeddings: bool = False,
    double_quant: bool = True,
    extra_trainable_params: int = 0,
) -> MemoryEstimate:
    """Per-GPU memory of one training step (the module docstring has the formulas).

    `method` qlora quantizes the base to 4 bits, `precision` is the compute dtype;
    `lora_params` 0 means unknown (0.5 % of the base); `extra_trainable_params` counts
    modules trained in full next to adapters (`modulesToSave`); `vocab_size` 0 leaves out
    the logits and keeps embeddings quantized.
    """
    dtype = DTYPE_BYTES.get(precision, 2.0)
    embeddings = vocab_size * hidden_size * (1 if tied_embeddings else 2)
    weights = _weight_bytes(params, method, dtype, embeddings, double_quant)
    if method == "full":
        trainable = params
        gradients = trainable * dtype
        master = MASTER_WEIGHT_BYTES if dtype < MASTER_WEIGHT_BYTES else 0.0
        optimizer_states = trainable * (OPTIMIZER_BYTES.get(optimizer, 8.0) + master)
    else:
        adapters = lora_params or int(params * DEFAULT_LORA_FRACTION)
        trainable = adapters + extra_trainable_params
        weights += adapters * ADAPTER_BYTES
        gradients = adapters * ADAPTER_BYTES + extra_trainable_params * dtype
        optimizer_states = trainable * OPTIMIZER_BYTES.get(optimizer, 8.0)
    activations = _activation_bytes(
        micro_batch_size * max_seq_length,
        hidden_size,
        num_layers,
        vocab_size,
        dtype,
        gradient_checkpointing,
    )
    sharded = (weights + gradients + optimizer_states) / shards
    overhead = CUDA_CONTEXT_GIB * GIB + FRAGMENTATION * (sharded + activations)
    return MemoryEstimate(
        weights=weights / shards / GIB,
        gradients=gradients / shards / GIB,
        optimizer=optimizer_states / shards / GIB,
        activations=activations / GIB,
        overhead=overhead / GIB,
        trainable_params=trainable,
    )


def _weight_bytes(
    params: int, method: str, dtype: float, embeddings: int, double_quant: bool
) -> float:
    if method != "qlora":
        return params * dtype
    # bitsandbytes quantizes the linear layers; embeddings and the head stay in `dtype`.
    quantized = max(params - embeddings, 0)
    per_param = NF4_BYTES + QUANT_CONSTANT_BYTES[double_quant]
    return quantized * per_param + (params - quantized) * dtype


def _activation_bytes(
    tokens: int,
    hidden_size: int,
    num_layers: int,
    vocab_size: int,
    dtype: float,
    gradient_checkpointing: bool,
) -> float:
    scale = dtype / 2  # the 34 of Korthikanti et al. assumes 16-bit activations
    if gradient_checkpointing:
        layers = CHECKPOINTED_BYTES_PER_LAYER * num_layers + ACTIVATION_BYTES_PER_LAYER
    else:
        layers = ACTIVATION_BYTES_PER_LAYER * num_layers
    logits = vocab_size * (dtype + LOSS_BYTES_PER_LOGIT)
    return tokens * (hidden_size * layers * scale + logits)
