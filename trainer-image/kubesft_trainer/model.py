"""Load the tokenizer and base model, and make it trainable the way `spec.method` says.

Weights come from a mounted folder or GGUF file (`runtime.modelPath`) or from the hub
(`spec.model.name` at `revision`, token from `HF_TOKEN`). GGUF is dequantized by
transformers on load. lora and qlora freeze the base and train peft adapters; full
trains every weight. Hub answers that retrying cannot fix (unknown or gated repository,
unknown revision) become UserErrors; network failures stay retryable.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from kubesft.api.job import SFTJobSpec
from kubesft.api.runtime import TrainerRuntime
from kubesft_trainer.attention import register_packed_sdpa
from kubesft_trainer.chat_template import resolve_chat_template
from kubesft_trainer.config import Precision
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.graded_loss import install_graded_loss
from kubesft_trainer.neftune import NeftuneHandle, activate_neftune

CHECKPOINTING_KWARGS = {"use_reentrant": False}
"""Non-reentrant checkpointing works with frozen inputs, DDP and `no_sync`."""


@dataclass(frozen=True)
class ModelSource:
    """Where to load from and with which loader arguments."""

    location: str
    """A local folder or a hub repository id."""
    gguf_file: str | None = None
    hub: dict[str, Any] = field(default_factory=dict)
    """`revision` and `token` for hub ids; empty for local folders."""
    trust_remote_code: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments every `from_pretrained` of this source takes."""
        out: dict[str, Any] = {**self.hub, "trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            out["gguf_file"] = self.gguf_file
        return out


@dataclass
class LoadedModel:
    """The trainable model with what the rest of the run needs to drive it."""

    model: nn.Module
    attn_implementation: str
    is_adapter: bool
    neftune: NeftuneHandle | None = None


def model_source(spec: SFTJobSpec, runtime: TrainerRuntime) -> ModelSource:
    """A mounted model (`runtime.modelPath`) wins; otherwise `spec.model.name` on the hub."""
    trust = spec.model.trust_remote_code
    if runtime.model_path:
        path = Path(runtime.model_path)
        if not path.exists():
            raise UserError(
                f"runtime.modelPath {path} does not exist; check spec.model.{spec.model.source} "
                "points at the model folder or GGUF file"
            )
        if path.is_file():
            if path.suffix != ".gguf":
                raise UserError(f"runtime.modelPath {path} is a file but not a .gguf file")
            return ModelSource(str(path.parent), path.name, trust_remote_code=trust)
        return ModelSource(str(path), spec.model.gguf_file, trust_remote_code=trust)
    if spec.model.source != "hf":
        raise UserError(
            f"spec.model.source is {spec.model.source} but the model is not mounted "
            "(runtime.modelPath is empty); the operator must provide it"
        )
    hub = {"revision": spec.model.revision, "token": os.environ.get("HF_TOKEN") or None}
    return ModelSource(spec.model.name, spec.model.gguf_file, hub, trust)


@contextmanager
def hub_errors(spec: SFTJobSpec) -> Iterator[None]:
    """Turn hub answers that no retry can change into UserErrors naming the field."""
    try:
        yield
    except (OSError, ValueError) as err:
        cause = _root_hub_error(err)
        name = spec.model.name
        if isinstance(cause, GatedRepoError):
            raise UserError(
                f"spec.model.name {name} is a gated repository; accept its terms on the hub "
                "and set spec.model.tokenSecretRef to a token with access"
            ) from None
        if isinstance(cause, RevisionNotFoundError):
            raise UserError(
                f"spec.model.revision {spec.model.revision!r} does not exist in {name}"
            ) from None
        if isinstance(cause, RepositoryNotFoundError | HFValidationError):
            raise UserError(
                f"spec.model.name {name} is not a model repository on the hub (or it is "
                "private: set spec.model.tokenSecretRef)"
            ) from None
        raise


def _root_hub_error(err: BaseException) -> BaseException | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, RepositoryNotFoundError | RevisionNotFoundError | HFValidationError):
            return seen
        seen = seen.__cause__
    return None


def load_tokenizer(spec: SFTJobSpec, source: ModelSource) -> tuple[Any, str]:
    """The tokenizer (with a pad token) and the Jinja chat template the run uses."""
    with hub_errors(spec):
        tokenizer = AutoTokenizer.from_pretrained(source.location, **source.kwargs())
    if tokenizer.pad_token_id is None:
        # Padding is masked out and never graded, so any id works; EOS always exists.
        tokenizer.pad_token = tokenizer.eos_token
    try:
        template = resolve_chat_template(spec.model.chat_template, tokenizer)
    except ValueError as err:
        raise UserError(str(err)) from None
    return tokenizer, template


def describe_base_model(spec: SFTJobSpec, source: ModelSource) -> tuple[Any, int]:
    """The base model's config and parameter count, built on the meta device (no weights)."""
    with hub_errors(spec):
        config = AutoConfig.from_pretrained(source.location, **source.kwargs())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            config, trust_remote_code=source.trust_remote_code
        )
    return config, sum(p.numel() for p in model.parameters())


def choose_attn_implementation(requested: str, *, cuda: bool, precision: Precision) -> str:
    """`auto`: flash-attention 2 when installed and usable (CUDA, half precision), else sdpa.

    sdpa loads as kubesft's packed SDPA (`attention.py`): torch's SDPA per packed example.
    """
    if requested == "auto":
        flash = importlib.util.find_spec("flash_attn") is not None
        usable = flash and cuda and precision.mixed_precision != "no"
        requested = "flash_attention_2" if usable else "sdpa"
    return register_packed_sdpa() if requested == "sdpa" else requested


def load_model(
    spec: SFTJobSpec, source: ModelSource, precision: Precision, *, device_index: int = 0
) -> LoadedModel:
    """The base model made trainable by `spec.method`, gradient checkpointing and NEFTune."""
    cuda = torch.cuda.is_available()
    method = spec.method
    if method.type == "qlora" and not cuda:
        raise UserError(
            "method.type qlora needs a CUDA GPU (bitsandbytes 4-bit); this node has none. "
            "Use spec.method.type lora, or request spec.resources.gpus"
        )
    attn = choose_attn_implementation(
        spec.training.attn_implementation, cuda=cuda, precision=precision
    )
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, precision.weights_dtype),
        "attn_implementation": attn,
    }
    if method.quantization is not None:
        kwargs |= {
            "quantization_config": _bnb_config(spec),
            "device_map": {"": device_index},
        }
    with hub_errors(spec):
        base = load_causal_lm(source, **kwargs)
    base.config.use_cache = False  # a KV cache is useless in training and breaks packing
    install_graded_loss(base)  # before peft and accelerate wrap the forward
    model = _make_trainable(base, spec)
    neftune = None
    if spec.training.neftune_alpha is not None:
        neftune = activate_neftune(model, spec.training.neftune_alpha)
    return LoadedModel(model, attn, is_adapter=method.type != "full", neftune=neftune)


def load_causal_lm(source: ModelSource, **kwargs: Any) -> Any:
    """`AutoModelForCausalLM.from_pretrained` of `source`; a GGUF dequantized on load is
    made a plain model.

    transformers keeps the GGUF quantizer on a model whose weights it dequantized into
    plain tensors on load (its `packed_modules` is empty: no GGUF kernel, or the
    architecture's legacy loader), and `save_pretrained` then refuses it ("quantized with gguf and
    is not serializable"): a full fine-tune or a merged adapter of a GGUF base could not be
    saved. The quantizer's own `remove_quantization_config` drops it; weights still packed
    in GGUF blocks (a kernel was found) keep it.
    """
    model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs, **source.kwargs())
    quantizer: Any = getattr(model, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    if getattr(config, "quant_method", None) == "gguf" and not quantizer.packed_modules:
        quantizer.remove_quantization_config(model)
    return model


def _bnb_config(spec: SFTJobSpec) -> Any:
    from transformers import BitsAndBytesConfig

    quant = spec.method.quantization
    assert quant is not None
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # untyped __init__
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, quant.compute_dtype),
    )


def _make_trainable(model: Any, spec: SFTJobSpec) -> nn.Module:
    """Freeze and wrap per `spec.method`; turn on gradient checkpointing if asked."""
    checkpointing = spec.training.gradient_checkpointing
    if spec.method.type == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        if checkpointing:
            enable_checkpointing(model)
        return model  # type: ignore[no-any-return]

    from peft import get_peft_model, prepare_model_for_kbit_training

    if spec.method.type == "qlora":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS,
        )
    elif checkpointing:
        enable_checkpointing(model)
    if checkpointing:
        # The frozen embeddings' output would not require grad, leaving nothing to recompute.
        model.enable_input_require_grads()
    with peft_quietly():
        return get_peft_model(model, lora_config(spec))  # type: ignore[no-any-return]


@contextmanager
def peft_quietly() -> Iterator[None]:
    """peft reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        yield


def enable_checkpointing(model: Any) -> None:
    """Activation checkpointing under its transformers 5 name (the old one still works)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING_KWARGS)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS)


def lora_config(spec: SFTJobSpec) -> Any:
    """peft's LoraConfig from `spec.method.lora`; `all-linear` is every linear but the head."""
    from peft import LoraConfig

    lora = spec.method.lora
    targets: str | list[str] = (
        "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    )
    return LoraConfig(
        r=lora.r,
        # peft annotates int, but computes scale = alpha / r and accepts any number.
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=list(lora.modules_to_save) or None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
