"""The run plan: steps, accumulation, cadences and precision derived from the spec."""

from __future__ import annotations

import copy
import json

import pytest

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.config import Precision, load_config, plan_run, resolve_precision
from kubesft_trainer.exit_codes import UserError
from tests.support.sft_run import BASE_SPEC

FP32 = Precision("no", "float32")


def job_spec(**training) -> SFTJobSpec:
    spec = copy.deepcopy(BASE_SPEC)
    dropped = ("maxSteps", "gradientAccumulation")
    spec["training"] = {k: v for k, v in spec["training"].items() if k not in dropped} | training
    return SFTJobSpec.model_validate(spec)


def test_total_steps_come_from_epochs_over_per_rank_micro_batches() -> None:
    spec = job_spec(epochs=2.5, gradientAccumulation=4)
    plan = plan_run(
        spec, micro_batches_per_epoch=10, tokens_per_micro_batch=64, world_size=2, precision=FP32
    )
    assert plan.steps_per_epoch == 3  # ceil(10 / 4): the last step of an epoch is shorter
    assert plan.total_steps == 8  # ceil(2.5 * 3)
    assert plan.eval_every == plan.checkpoint_every == spec.checkpoints.every_steps


def test_max_steps_override_epochs_and_warmup_is_a_ratio_of_them() -> None:
    plan = plan_run(
        job_spec(maxSteps=100, warmupRatio=0.05),
        micro_batches_per_epoch=10,
        tokens_per_micro_batch=64,
        world_size=1,
        precision=FP32,
    )
    assert (plan.total_steps, plan.warmup_steps) == (100, 5)


def test_global_batch_tokens_set_accumulation_from_tokens_per_micro_batch() -> None:
    plan = plan_run(
        job_spec(globalBatchTokens=4096),
        micro_batches_per_epoch=100,
        tokens_per_micro_batch=256,
        world_size=2,
        precision=FP32,
    )
    assert plan.gradient_accumulation == 8  # 4096 / (256 tokens * 2 ranks)


def test_bf16_on_cpu_autocasts_and_keeps_a_half_precision_base_for_adapters() -> None:
    lora = resolve_precision(job_spec(precision="bf16"), cuda=False, bf16_supported=False)
    assert lora == Precision("bf16", "bfloat16")
    spec = job_spec(precision="bf16")
    spec.method.type = "full"
    assert resolve_precision(spec, cuda=False, bf16_supported=False).weights_dtype == "float32"


def test_fp16_on_cpu_and_bf16_on_old_gpus_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"spec\.training\.precision: fp16 needs a CUDA GPU"):
        resolve_precision(job_spec(precision="fp16"), cuda=False, bf16_supported=False)
    with pytest.raises(UserError, match="set precision to fp16"):
        resolve_precision(job_spec(precision="bf16"), cuda=True, bf16_supported=False)


def test_invalid_config_names_the_field(tmp_path) -> None:
    doc = {"spec": {**BASE_SPEC, "training": {"microBatchSize": 0}}, "runtime": {}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))

    with pytest.raises(UserError) as error:
        load_config(path)
    assert "spec.training.microBatchSize" in str(error.value)
    assert "runtime.outputDir is required" in str(error.value)
