"""spec.method decides which weights train: adapters on every linear layer, all, or 4-bit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.config import Precision
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.model import ModelSource, load_model
from tests.support.sft_run import BASE_SPEC

FP32 = Precision("no", "float32")
LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def job_spec(**method) -> SFTJobSpec:
    spec = copy.deepcopy(BASE_SPEC)
    spec["method"] = method
    return SFTJobSpec.model_validate(spec)


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_lora_trains_only_adapters_on_every_linear_layer(tiny_model_dir) -> None:
    loaded = load_model(job_spec(type="lora"), ModelSource(str(tiny_model_dir)), FP32)

    names = trainable_names(loaded.model)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    adapted = {n.split(".lora_")[0] for n in names}
    for layer in range(2):
        for linear in LINEAR_LAYERS:
            part = "self_attn" if linear in LINEAR_LAYERS[:4] else "mlp"
            assert any(a.endswith(f"layers.{layer}.{part}.{linear}") for a in adapted), linear
    assert not any("lm_head" in a for a in adapted)  # all-linear leaves the output head alone
    assert loaded.is_adapter


def test_lora_target_modules_limit_the_adapters(tiny_model_dir) -> None:
    spec = job_spec(type="lora", lora={"targetModules": ["q_proj", "v_proj"]})
    loaded = load_model(spec, ModelSource(str(tiny_model_dir)), FP32)

    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable_names(loaded.model)}
    assert adapted == {"q_proj", "v_proj"}


def test_full_trains_every_parameter(tiny_model_dir) -> None:
    loaded = load_model(job_spec(type="full"), ModelSource(str(tiny_model_dir)), FP32)

    params = list(loaded.model.parameters())
    assert params and all(p.requires_grad for p in params)
    assert not loaded.is_adapter
    assert loaded.model.config.use_cache is False


def test_qlora_without_cuda_is_a_user_error(tiny_model_dir, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(
        UserError, match=r"method.type qlora needs a CUDA GPU \(bitsandbytes 4-bit\)"
    ):
        load_model(job_spec(type="qlora"), ModelSource(str(tiny_model_dir)), FP32)


def test_neftune_hook_is_active_when_alpha_is_set(tiny_model_dir) -> None:
    spec = copy.deepcopy(BASE_SPEC)
    spec["training"]["neftuneAlpha"] = 5.0
    loaded = load_model(SFTJobSpec.model_validate(spec), ModelSource(str(tiny_model_dir)), FP32)

    assert loaded.neftune is not None and loaded.neftune.handles
