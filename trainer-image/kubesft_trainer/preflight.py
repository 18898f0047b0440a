"""Preflight: will the job fit on its GPUs, and how many tokens will it train on?

The memory estimate is per GPU under data parallelism (every GPU holds a full replica),
in GiB, as the sum of:
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
It is a rough, slightly pessimistic guide, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.chat_template import resolve_chat_template
from kubesft_trainer.masking import IGNORE_INDEX, tokenize_example
from kubesft_trainer.prepare import length_histogram

GIB = 1024**3
DTYPE_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
}
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
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PREFLIGHT_SAMPLE = 2000
"""Training examples tokenized for the token statistics; totals are scaled up from them."""


def estimate_gpu_memory_gib(
    num_params: int,
    method: str,
    precision: str,
    lora_params: int,
    quant: str | None,
    micro_batch_size: int,
    max_seq_length: int,
    hidden_size: int,
    num_layers: int,
    gradient_checkpointing: bool,
    optimizer: str,
    *,
    vocab_size: int = 0,
    tied_embeddings: bool = False,
    double_quant: bool = True,
    extra_trainable_params: int = 0,
) -> dict[str, Any]:
    """Per-GPU memory breakdown in GiB (see the module docstring for the formulas).

    `quant` is a 4-bit type (`nf4`, `fp4`) or None; `extra_trainable_params` counts
    modules trained in full next to adapters (`modulesToSave`).
    """
    dtype = DTYPE_BYTES[precision]
    embedding_params = vocab_size * hidden_size * (1 if tied_embeddings else 2)
    if quant is not None:
        quantized = max(num_params - embedding_params, 0)
        weights = quantized * (NF4_BYTES + QUANT_CONSTANT_BYTES[double_quant])
        weights += (num_params - quantized) * dtype
    else:
        weights = num_params * dtype
    if method == "full":
        trainable = num_params
        gradients = trainable * dtype
        master = MASTER_WEIGHT_BYTES if dtype < MASTER_WEIGHT_BYTES else 0.0
        optimizer_states = trainable * (OPTIMIZER_BYTES[optimizer] + master)
    else:
        trainable = lora_params + extra_trainable_params
        weights += lora_params * ADAPTER_BYTES
        gradients = lora_params * ADAPTER_BYTES + extra_trainable_params * dtype
        optimizer_states = trainable * OPTIMIZER_BYTES[optimizer]
    tokens = micro_batch_size * max_seq_length
    scale = dtype / 2  # the 34 of Korthikanti et al. assumes 16-bit activations
    if gradient_checkpointing:
        per_token = hidden_size * (
            CHECKPOINTED_BYTES_PER_LAYER * num_layers + ACTIVATION_BYTES_PER_LAYER
        )
    else:
        per_token = hidden_size * ACTIVATION_BYTES_PER_LAYER * num_layers
    activations = tokens * per_token * scale + tokens * vocab_size * (dtype + LOSS_BYTES_PER_LOGIT)
    subtotal = weights + gradients + optimizer_states + activations
    overhead = CUDA_CONTEXT_GIB * GIB + FRAGMENTATION * subtotal
    parts = {
        "weightsGiB": weights,
        "gradientsGiB": gradients,
        "optimizerStatesGiB": optimizer_states,
        "activationsGiB": activations,
        "overheadGiB": overhead,
        "totalGiB": subtotal + overhead,
    }
    return {
        **{key: round(value / GIB, 2) for key, value in parts.items()},
        "trainableParams": trainable,
        "method": method,
        "optimizer": optimizer,
        "microBatchSize": micro_batch_size,
        "maxSeqLength": max_seq_length,
        "gradientCheckpointing": gradient_checkpointing,
    }


def lora_param_count(config: Any, r: int, target_modules: Sequence[str]) -> int:
    """Adapter parameters: r * (in + out) for each adapted linear layer of a Llama-style block.

    Target names it cannot size are counted as `all-linear`, an upper bound.
    """
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    chosen = [name for name in LORA_MODULES if any(t.endswith(name) for t in target_modules)]
    if "all-linear" in target_modules or not chosen:
        chosen = list(LORA_MODULES)
    per_layer = sum(r * sum(shapes[name]) for name in chosen)
    return per_layer * int(config.num_hidden_layers)


def token_stats(lengths: Sequence[int], max_seq_length: int) -> dict[str, Any]:
    """Tokens trained on after truncation, the truncated share and the length spread."""
    ordered = sorted(lengths)
    count = len(ordered)

    def percentile(p: float) -> int:
        # Nearest rank: the smallest length at or above p percent of the examples.
        return ordered[max(math.ceil(p / 100 * count) - 1, 0)] if count else 0

    return {
        "examples": count,
        "estimatedTokens": sum(min(n, max_seq_length) for n in ordered),
        "truncatedFraction": sum(n > max_seq_length for n in ordered) / count if count else 0.0,
        "lengthHistogram": length_histogram(ordered),
        "lengthP50": percentile(50),
        "lengthP95": percentile(95),
        "lengthMax": ordered[-1] if count else 0,
    }


def run_preflight(
    spec: SFTJobSpec,
    tokenizer: Any,
    train_examples: Sequence[Mapping[str, Any]],
    num_params: int,
    *,
    model_config: Any,
    sample_size: int = PREFLIGHT_SAMPLE,
) -> dict[str, Any]:
    """Token statistics of the training split and the memory estimate, as `Preflight` fields.

    `estimatedTokens` is one epoch of the training split after truncation; when more
    than `sample_size` examples are given, counts are scaled up from the first ones.
    """
    training, method = spec.training, spec.method
    sample = list(train_examples[:sample_size])
    needs_template = any("messages" in example for example in sample)
    template = (
        resolve_chat_template(spec.model.chat_template, tokenizer) if needs_template else None
    )
    lengths, dropped = [], 0
    for example in sample:
        # Tokenized whole: the real length shows how much truncation cuts.
        tokenized = tokenize_example(
            example,
            tokenizer,
            loss_on=training.loss_on,
            max_seq_length=2**31,
            chat_template=template,
        )
        lengths.append(len(tokenized))
        dropped += all(
            label == IGNORE_INDEX for label in tokenized.labels[: training.max_seq_length]
        )
    stats = token_stats(lengths, training.max_seq_length)
    scale = len(train_examples) / len(sample) if sample else 0.0
    stats["estimatedTokens"] = round(stats["estimatedTokens"] * scale)
    stats["droppedFraction"] = dropped / len(sample) if sample else 0.0

    quantization = method.quantization
    vocab_size = int(getattr(model_config, "vocab_size", 0) or 0)
    hidden_size = int(model_config.hidden_size)
    lora_params = extra = 0
    if method.type != "full":
        lora_params = lora_param_count(model_config, method.lora.r, method.lora.target_modules)
        extra = (
            vocab_size
            * hidden_size
            * sum(name in ("embed_tokens", "lm_head") for name in method.lora.modules_to_save)
        )
    memory = estimate_gpu_memory_gib(
        num_params,
        method.type,
        quantization.compute_dtype if quantization else training.precision,
        lora_params,
        quantization.quant_type if quantization else None,
        training.micro_batch_size,
        training.max_seq_length,
        hidden_size,
        int(model_config.num_hidden_layers),
        training.gradient_checkpointing,
        training.optimizer,
        vocab_size=vocab_size,
        tied_embeddings=bool(getattr(model_config, "tie_word_embeddings", False)),
        double_quant=quantization.double_quant if quantization else True,
        extra_trainable_params=extra,
    )
    return {
        "estimatedGpuMemoryGiB": round(memory["totalGiB"], 1),
        **stats,
        "memory": memory,
        "sampledExamples": len(sample),
    }


def check_feasible(
    estimate: Mapping[str, Any],
    gpu_memory_gib: float | None,
    *,
    gpu_resource_name: str = "nvidia.com/gpu",
) -> str | None:
    """None when the estimate fits the GPU; otherwise a message saying what to change.

    `estimate` is the result of `estimate_gpu_memory_gib` or of `run_preflight`.
    """
    memory = estimate.get("memory", estimate)
    needed = memory.get("totalGiB", estimate.get("estimatedGpuMemoryGiB"))
    if needed is None or not gpu_memory_gib or needed <= gpu_memory_gib:
        return None
    return (
        f"needs ~{needed:.1f} GiB per GPU but {gpu_resource_name} has {gpu_memory_gib:g} GiB: "
        + ", ".join(_fixes(memory))
    )


def _fixes(memory: Mapping[str, Any]) -> Iterable[str]:
    """The changes that would lower this estimate, biggest savings first."""
    method = memory.get("method")
    if method == "full":
        yield "use spec.method.type lora or qlora"
    elif method == "lora":
        yield "use spec.method.type qlora"
    if method == "full" and memory.get("optimizer") == "adamw":
        yield "set spec.training.optimizer adamw_8bit"
    if memory.get("gradientCheckpointing") is False:
        yield "enable spec.training.gradientCheckpointing"
    if (memory.get("microBatchSize") or 1) > 1:
        yield f"lower spec.training.microBatchSize (now {memory['microBatchSize']})"
    seq = memory.get("maxSeqLength")
    yield (
        f"lower spec.training.maxSeqLength (now {seq})"
        if seq
        else "lower spec.training.maxSeqLength"
    )
    # Data parallelism keeps a full replica on every GPU, so more GPUs would not help.
    yield "or use GPUs with more memory"
