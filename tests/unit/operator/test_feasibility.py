"""Feasibility is decided before any GPU pod exists, with a message that says what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubesft.api import SFTJob
from kubesft.operator.config import OperatorConfig
from kubesft.operator.feasibility import assess
from kubesft.sizing import params_from_name
from tests.unit.operator.fixtures import job

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "jobs"


def test_params_from_model_names() -> None:
    assert params_from_name("meta-llama/Llama-3.1-8B-Instruct") == 8_000_000_000
    assert params_from_name("HuggingFaceTB/SmolLM2-135M-Instruct") == 135_000_000
    assert params_from_name("Qwen/Qwen2.5-0.5B") == 500_000_000
    assert params_from_name("tiny-llama") is None


def test_qlora_on_cpu_is_infeasible() -> None:
    problem = assess(job(method={"type": "qlora"}, resources={"gpus": 0}), OperatorConfig()).problem
    assert problem is not None and "resources.gpus" in problem


def test_full_70b_on_one_24gib_gpu_is_infeasible_with_advice() -> None:
    config = OperatorConfig(gpu_memory_gib={"nvidia.com/gpu": 24})
    sft = job(model={"name": "meta-llama/Llama-3.1-70B"}, method={"type": "full"})
    problem = assess(sft, config).problem
    assert problem is not None and "GiB" in problem and "qlora" in problem


def test_lora_1b_fits_and_unknown_sizes_pass() -> None:
    config = OperatorConfig(gpu_memory_gib={"nvidia.com/gpu": 24})
    assert assess(job(model={"name": "meta-llama/Llama-3.2-1B"}), config).problem is None
    assert assess(job(model={"name": "my-model"}), config).problem is None


def test_config_from_env() -> None:
    cfg = OperatorConfig.from_env(
        {
            "KUBESFT_TRAINER_IMAGE": "img:1",
            "KUBESFT_GPU_MEMORY_GIB": '{"nvidia.com/gpu": 40}',
            "KUBESFT_RESYNC_SECONDS": "5",
        }
    )
    assert cfg.trainer_image == "img:1" and cfg.gpu_memory_gib == {"nvidia.com/gpu": 40}
    assert cfg.resync_seconds == 5


def full_2x8(**training) -> SFTJob:
    manifest = yaml.safe_load((EXAMPLES / "full-2x8.yaml").read_text())
    manifest["spec"]["training"] |= training
    return SFTJob.model_validate(manifest)


def test_full_2x8_example_is_feasible_because_it_shards() -> None:
    assessment = assess(full_2x8(), OperatorConfig())
    assert assessment.problem is None and assessment.estimate is not None
    assert assessment.estimate.strategy == "fsdp" and assessment.estimate.world_size == 16
    assert assessment.message == assessment.estimate.describe()
    assert assessment.message.startswith("sharded (fsdp) over 16 GPUs, ~")
    assert assessment.estimate.total < 80


def test_full_2x8_forced_to_ddp_is_infeasible_with_advice_to_shard() -> None:
    assessment = assess(full_2x8(parallelism="ddp"), OperatorConfig())
    problem = assessment.problem
    assert problem is not None and assessment.estimate is not None
    assert assessment.estimate.strategy == "ddp" and assessment.estimate.total > 80
    assert "replicated (ddp) over 16 GPUs" in problem and "has 80 GiB" in problem
    assert "set training.parallelism fsdp (or auto): sharded (fsdp) over 16 GPUs" in problem


def test_fsdp_is_refused_for_adapters() -> None:
    with pytest.raises(ValueError, match=r"training\.parallelism fsdp shards full fine-tuning"):
        job(method={"type": "lora"}, training={"parallelism": "fsdp"})
