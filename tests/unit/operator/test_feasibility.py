"""Feasibility is decided before any GPU pod exists, with a message that says what to change."""

from __future__ import annotations

from kubesft.operator.config import OperatorConfig
from kubesft.operator.feasibility import assess
from kubesft.sizing import params_from_name
from tests.unit.operator.fixtures import job


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
