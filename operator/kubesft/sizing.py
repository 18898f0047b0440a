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
- activations: per layer s*b*h*34 bytes at 16 bits (Korthikanti et al. 2022, eq. 1,
  without the 5*a*s/h attention-score term that flash/SDPA attention never stores);
  with gradient checkpointing each layer keeps only its 2*s*b*h-byte input and one layer
  is recomputed at a time; plus the loss (`loss_bytes`): the trainer applies the LM head
  at graded positions only, in chunks (kubesft_trainer.graded_loss), so one chunk's fp32
  logits and their gradient, the graded rows' hidden states and their gradient, and for
  full fine-tuning the head's gradient buffer;
- sharding buffers (FSDP only): the unsharded half-precision weights of the layer being
  computed and of the prefetched next one, its fp32 gradient before the reduce-scatter,
  and the unsharded embeddings and head (the root unit, kept for the whole step);
- overhead: ~1 GiB of CUDA context and 10 % of the rest for allocator fragmentation.
Under FSDP (`strategy` fsdp) weights, gradients and optimizer states are split across
the `world_size` GPUs; activations are not. It is a rough, slightly pessimistic guide,
not a promise; tests/unit/test_sizing.py holds it against torch's own accounting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kubesft.api.job import SFTJobSpec

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
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Strategy = Literal["ddp", "fsdp"]
"""ddp: every GPU holds a replica; fsdp: weights, gradients and optimizer states sharded."""

_SIZE = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


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
    activations = _activation_bytes(
        tokens, hidden_size, num_layers, dtype, gradient_checkpointing
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


def _activation_bytes(
    tokens: int,
    hidden_size: int,
    num_layers: int,
    dtype: float,
    gradient_checkpointing: bool,
) -> float:
    scale = dtype / 2  # the 34 of Korthikanti et al. assumes 16-bit activations
    if gradient_checkpointing:
        layers = CHECKPOINTED_BYTES_PER_LAYER * num_layers + ACTIVATION_BYTES_PER_LAYER
    else:
        layers = ACTIVATION_BYTES_PER_LAYER * num_layers
    return tokens * hidden_size * layers * scale
