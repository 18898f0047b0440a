"""GPU memory estimates for fine-tuning: the one memory model of the operator and the trainer.

Pure arithmetic, no torch. `estimate_job(spec, shape, world_size)` is the entry point of
both users: the operator's Feasible condition, before any GPU pod exists (`ModelShape.guess`
from the model's name), and the trainer's preflight (`ModelShape` from the model's config).
`resolve_strategy` decides, also for the trainer, whether the model is replicated (DDP) or
sharded (FSDP).

Per GPU, in GiB, the sum of:
- weights: parameters x bytes per dtype (fp32 4, bf16/fp16 2); 4-bit bases (QLoRA) pay
  0.5 byte per quantized parameter plus the quantization constants (fp32 absmax per
  64-block = 0.0625 B; with double quantization 8-bit absmax + fp32 per 256 of them =
  0.0159 B), embeddings and the output head stay in the compute dtype; LoRA adapters are
  fp32 (peft upcasts adapters of a 16-bit base). Full fine-tuning keeps fp32 weights and
  computes in the half dtype (mixed precision, as the trainer runs it), so its weights
  count 4 B, plus autocast's 2 B half copy of each weight under DDP;
- gradients: trainable parameters only, in their own dtype;
- optimizer states: AdamW keeps fp32 m and v (8 B per trainable parameter), 8-bit AdamW
  2 B, SGD without momentum 0 (full fine-tuning in mixed precision: 16 B per parameter
  with weights and gradients, ZeRO's figure);
- activations: per token and layer 11 h + 3 kv + 5 I values in the compute dtype (h hidden,
  kv key/value width, I MLP width: `LAYER_VALUES`, from torch's accounting of a Llama
  layer; flash/SDPA never store the attention scores); with gradient checkpointing each
  layer keeps only its input (h values) and one layer is recomputed at a time; plus the
  loss (`loss_bytes`): the trainer applies the LM head at graded positions only, in
  chunks (kubesft_trainer.graded_loss), so one chunk's fp32 logits and their gradient,
  the graded rows' hidden states and their gradient, and for full fine-tuning the head's
  gradient buffer;
- sharding buffers (FSDP only): the unsharded half-precision weights of the layer being
  computed and of the prefetched next one, its fp32 gradient before the reduce-scatter,
  and the unsharded embeddings and head (the root unit, kept for the whole step);
- overhead: ~1 GiB of CUDA context and 10 % of the rest for allocator fragmentation.
Under FSDP (`strategy` fsdp) weights, gradients and optimizer states are split across
the `world_size` GPUs; activations are not. It is a rough, slightly pessimistic guide,
not a promise; tests/unit/test_sizing.py holds it against torch's own accounting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from kubesft.api.job import SFTJobSpec
from kubesft.model_shape import (
    ModelShape,
    hidden_size_guess,
    layers_guess,
    lora_param_count,
    params_from_name,
)

__all__ = [
    "MemoryEstimate",
    "ModelShape",
    "estimate_job",
    "estimate_memory",
    "hidden_size_guess",
    "layers_guess",
    "lora_param_count",
    "params_from_name",
    "resolve_strategy",
]

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
LAYER_VALUES = {"hidden": 11, "kv": 3, "intermediate": 5}
"""Values kept per token and decoder layer for backward, per unit of hidden size, key/value
width and MLP width: torch's saved-tensor accounting of transformers' Llama layer (norms,
projections, rotary, SDPA, SwiGLU's four I-wide tensors) is 8.4-10.1 h + 3.0 kv + 4.75 I
(tests/trainer/test_memory_model.py); rounded up. Korthikanti et al.'s 34 bytes/h assume
a GELU MLP of 4h and fall short here."""
OUTSIDE_LAYER_VALUES = 3
"""Per token and hidden unit outside the layers: embeddings' output, final norm."""
LOSS_CHUNK_LOGITS = 2**24
"""Logit elements per LM-head chunk of the loss: 64 MiB of fp32 logits."""
MIN_LOSS_CHUNK_ROWS = 128
"""Fewer rows per head matmul would waste GPU tiles and CPU vector units."""
FSDP_PREFETCHED_LAYERS = 2
"""Unsharded layers at once under FSDP: the one computing and the one being gathered."""
CUDA_CONTEXT_GIB = 1.0
FRAGMENTATION = 0.10
DEFAULT_LORA_FRACTION = 0.005
"""Adapter size when unknown: r=16 on every linear layer of a Llama is ~0.5 % of its base."""

Strategy = Literal["ddp", "fsdp"]
"""ddp: every GPU holds a replica; fsdp: weights, gradients and optimizer states sharded."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory of each part, in GiB, how the job is spread, and what trains."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    trainable_params: int = 0
    sharding_buffers: float = 0.0
    strategy: Strategy = "ddp"
    world_size: int = 1

    @property
    def total(self) -> float:
        parts = (self.weights, self.gradients, self.optimizer, self.activations)
        return sum(parts) + self.sharding_buffers + self.overhead

    def as_dict(self) -> dict[str, Any]:
        numbers = {k: v for k, v in asdict(self).items() if isinstance(v, float)}
        return {
            **{k: round(v, 2) for k, v in numbers.items()},
            "total": round(self.total, 2),
            "trainable_params": self.trainable_params,
            "strategy": self.strategy,
            "world_size": self.world_size,
        }

    def describe(self) -> str:
        """`fsdp over 16 GPUs, ~17.2 GiB per GPU`: the strategy and the per-GPU figure."""
        gpus = f"{self.world_size} GPU{'s' if self.world_size != 1 else ''}"
        spread = "sharded (fsdp)" if self.strategy == "fsdp" else "replicated (ddp)"
        return f"{spread} over {gpus}, ~{self.total:.1f} GiB per GPU"


def resolve_strategy(requested: str, method: str, world_size: int) -> Strategy:
    """`spec.training.parallelism` made concrete for `world_size` GPUs.

    auto shards (fsdp) full fine-tuning over more than one GPU, where a replica per GPU
    would hold 16 B per parameter; adapters stay data-parallel (ddp): their trainable
    state is small, and 4-bit bases cannot be sharded. One GPU is always ddp (one replica).
    """
    if world_size <= 1:
        return "ddp"
    if requested == "auto":
        return "fsdp" if method == "full" else "ddp"
    return "fsdp" if requested == "fsdp" else "ddp"


def estimate_job(
    spec: SFTJobSpec, shape: ModelShape, *, world_size: int, strategy: Strategy | None = None
) -> MemoryEstimate:
    """Per-GPU memory of `spec` on `world_size` GPUs, under `strategy` (default: the spec's)."""
    training, method = spec.training, spec.method
    quantization = method.quantization
    lora_params = extra = 0
    if method.type != "full" and shape.num_attention_heads:
        lora_params = lora_param_count(
            r=method.lora.r,
            target_modules=method.lora.target_modules,
            hidden_size=shape.hidden_size,
            num_layers=shape.num_layers,
            num_attention_heads=shape.num_attention_heads,
            num_key_value_heads=shape.num_key_value_heads,
            head_dim=shape.head_dim,
            intermediate_size=shape.intermediate_size,
        )
    if method.type != "full":
        saved = sum(name in ("embed_tokens", "lm_head") for name in method.lora.modules_to_save)
        extra = shape.vocab_size * shape.hidden_size * saved
    return estimate_memory(
        params=shape.params,
        method=method.type,
        precision=quantization.compute_dtype if quantization else training.precision,
        micro_batch_size=training.micro_batch_size,
        max_seq_length=training.max_seq_length,
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        gradient_checkpointing=training.gradient_checkpointing,
        lora_params=lora_params,
        optimizer=training.optimizer,
        strategy=strategy or resolve_strategy(training.parallelism, method.type, world_size),
        world_size=world_size,
        vocab_size=shape.vocab_size,
        tied_embeddings=shape.tied_embeddings,
        double_quant=quantization.double_quant if quantization else True,
        extra_trainable_params=extra,
        kv_size=shape.kv_size(),
        intermediate_size=shape.intermediate_size,
    )


def loss_chunk_rows(vocab_size: int) -> int:
    """Hidden-state rows per LM-head chunk of the loss, for `vocab_size` logits per row."""
    return max(MIN_LOSS_CHUNK_ROWS, LOSS_CHUNK_LOGITS // max(vocab_size, 1))


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
    strategy: Strategy = "ddp",
    world_size: int = 1,
    vocab_size: int = 0,
    tied_embeddings: bool = False,
    double_quant: bool = True,
    extra_trainable_params: int = 0,
    kv_size: int | None = None,
    intermediate_size: int | None = None,
) -> MemoryEstimate:
    """Per-GPU memory of one training step (the module docstring has the formulas).

    `method` qlora quantizes the base to 4 bits, `precision` is the compute dtype;
    `lora_params` 0 means unknown (0.5 % of the base); `extra_trainable_params` counts
    modules trained in full next to adapters (`modulesToSave`); `vocab_size` 0 leaves out
    the logits and keeps embeddings quantized. Under `strategy` fsdp the states are split
    over `world_size` GPUs.
    """
    dtype = DTYPE_BYTES.get(precision, 2.0)
    embeddings = vocab_size * hidden_size * (1 if tied_embeddings else 2)
    sharded = strategy == "fsdp" and world_size > 1
    shards = world_size if sharded else 1
    if method == "full":
        trainable = params
        stored = max(dtype, MASTER_WEIGHT_BYTES)  # fp32 weights, half-precision compute
        autocast_copy = dtype if dtype < stored and not sharded else 0.0
        weights = params * (stored + autocast_copy)
        gradients = trainable * stored
        optimizer_states = trainable * OPTIMIZER_BYTES.get(optimizer, 8.0)
    else:
        adapters = lora_params or int(params * DEFAULT_LORA_FRACTION)
        trainable = adapters + extra_trainable_params
        weights = _weight_bytes(params, method, dtype, embeddings, double_quant)
        weights += adapters * ADAPTER_BYTES
        gradients = adapters * ADAPTER_BYTES + extra_trainable_params * dtype
        optimizer_states = trainable * OPTIMIZER_BYTES.get(optimizer, 8.0)
    tokens = micro_batch_size * max_seq_length
    activations = activation_bytes(
        tokens,
        hidden_size,
        num_layers,
        dtype,
        gradient_checkpointing,
        kv_size=kv_size,
        intermediate_size=intermediate_size,
    ) + loss_bytes(tokens, hidden_size, vocab_size, dtype, head_trains=method == "full")
    buffers = _sharding_bytes(params, embeddings, num_layers, dtype) if sharded else 0.0
    states = (weights + gradients + optimizer_states) / shards
    overhead = CUDA_CONTEXT_GIB * GIB + FRAGMENTATION * (states + activations + buffers)
    return MemoryEstimate(
        weights=weights / shards / GIB,
        gradients=gradients / shards / GIB,
        optimizer=optimizer_states / shards / GIB,
        activations=activations / GIB,
        overhead=overhead / GIB,
        trainable_params=trainable,
        sharding_buffers=buffers / GIB,
        strategy="fsdp" if sharded else "ddp",
        world_size=world_size,
    )


def loss_bytes(
    tokens: int, hidden_size: int, vocab_size: int, dtype: float, *, head_trains: bool
) -> float:
    """Memory of the graded-positions loss (kubesft_trainer.graded_loss), in bytes.

    One chunk of logits (compute dtype, its fp32 copy, the gradient in compute dtype),
    every token's hidden state selected and its gradient (all tokens graded: the bound),
    and the head's gradient buffer when the head trains. 0 when `vocab_size` is unknown.
    """
    if not vocab_size:
        return 0.0
    chunk = min(tokens, loss_chunk_rows(vocab_size))
    logits = chunk * vocab_size * (4 + 2 * dtype)
    rows = tokens * hidden_size * 2 * dtype
    head = vocab_size * hidden_size * dtype if head_trains else 0.0
    return logits + rows + head


def _sharding_bytes(params: int, embeddings: int, num_layers: int, dtype: float) -> float:
    """FSDP's unsharded working set: gathered layers, one layer's fp32 gradient, the root."""
    layer = max(params - embeddings, 0) / max(num_layers, 1)
    return layer * (FSDP_PREFETCHED_LAYERS * dtype + 4) + embeddings * dtype


def _weight_bytes(
    params: int, method: str, dtype: float, embeddings: int, double_quant: bool
) -> float:
    if method != "qlora":
        return params * dtype
    # bitsandbytes quantizes the linear layers; embeddings and the head stay in `dtype`.
    quantized = max(params - embeddings, 0)
    per_param = NF4_BYTES + QUANT_CONSTANT_BYTES[double_quant]
    return quantized * per_param + (params - quantized) * dtype


def layer_activation_values(hidden_size: int, kv_size: int, intermediate_size: int) -> int:
    """Values one decoder layer keeps per token for backward (see `LAYER_VALUES`)."""
    v = LAYER_VALUES
    return v["hidden"] * hidden_size + v["kv"] * kv_size + v["intermediate"] * intermediate_size


def activation_bytes(
    tokens: int,
    hidden_size: int,
    num_layers: int,
    dtype: float,
    gradient_checkpointing: bool,
    *,
    kv_size: int | None = None,
    intermediate_size: int | None = None,
) -> float:
    """Bytes kept for backward by the model body, in the compute dtype.

    With checkpointing each layer keeps its input (h values per token) and one layer is
    recomputed at a time. Unknown widths are Llama 3's: kv = h/4, I = 3.5 h.
    """
    layer = layer_activation_values(
        hidden_size, kv_size or hidden_size // 4, intermediate_size or int(3.5 * hidden_size)
    )
    kept = hidden_size * num_layers + layer if gradient_checkpointing else layer * num_layers
    return tokens * (kept + OUTSIDE_LAYER_VALUES * hidden_size) * dtype
