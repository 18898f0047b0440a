"""Defaults live in the models: a minimal object gets the documented values."""

from __future__ import annotations

from kubesft.api import SFTDataset, SFTJob, parse_object
from kubesft.api.job import DEFAULT_LEARNING_RATE


def minimal_job(method: str = "lora") -> SFTJob:
    job = parse_object(
        {
            "apiVersion": "kubesft.io/v1alpha1",
            "kind": "SFTJob",
            "metadata": {"name": "j"},
            "spec": {
                "model": {"name": "org/model"},
                "dataset": {"name": "d"},
                "method": {"type": method},
                "output": {"pvc": {"claimName": "out"}},
            },
        }
    )
    assert isinstance(job, SFTJob)
    return job


def test_job_defaults() -> None:
    spec = minimal_job().spec
    assert spec.model.source == "hf" and spec.model.chat_template == "auto"
    assert spec.method.type == "lora"
    lora = spec.method.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (
        16,
        32.0,
        0.05,
        ["all-linear"],
    )
    t = spec.training
    assert (t.epochs, t.max_steps, t.scheduler, t.warmup_ratio) == (3.0, None, "cosine", 0.03)
    assert (t.max_seq_length, t.packing, t.loss_on, t.neftune_alpha) == (
        2048,
        True,
        "assistant",
        None,
    )
    assert (t.gradient_checkpointing, t.precision) == (True, "bf16")
    assert (spec.checkpoints.keep, spec.checkpoints.keep_best) == (3, True)
    r = spec.resources
    assert (r.gpus, r.nodes, r.gpu_resource_name) == (1, 1, "nvidia.com/gpu")
    assert spec.retry.max_restarts == 3 and spec.suspend is False
    assert spec.output.merge_adapter is False


def test_learning_rate_default_depends_on_method() -> None:
    for method in ("lora", "qlora", "full"):
        assert minimal_job(method).spec.learning_rate == DEFAULT_LEARNING_RATE[method]
    assert DEFAULT_LEARNING_RATE["full"] < DEFAULT_LEARNING_RATE["lora"]


def test_qlora_settings_default_only_for_qlora() -> None:
    assert minimal_job("lora").spec.method.quantization is None
    q = minimal_job("qlora").spec.method.quantization
    assert q is not None and (q.quant_type, q.double_quant, q.compute_dtype) == (
        "nf4",
        True,
        "bfloat16",
    )


def test_dataset_defaults() -> None:
    ds = parse_object(
        {
            "apiVersion": "kubesft.io/v1alpha1",
            "kind": "SFTDataset",
            "metadata": {"name": "d"},
            "spec": {"source": {"configMap": {"name": "cm"}}},
        }
    )
    assert isinstance(ds, SFTDataset)
    spec = ds.spec
    assert spec.format == "auto"
    assert spec.source.config_map is not None and spec.source.config_map.key == "data.jsonl"
    assert (spec.split.eval_fraction, spec.split.seed) == (0.05, 42)
    v = spec.validation
    assert (v.max_invalid_rows, v.min_examples, v.dedupe, v.max_bytes) == (0, 1, True, None)


def test_round_trip_keeps_camel_case_and_status() -> None:
    job = minimal_job()
    data = job.to_dict()
    assert data["spec"]["dataset"] == {"name": "d"}
    again = parse_object(data)
    assert again == job and again.spec.training.max_seq_length == 2048


def test_batch_tokens_spec_round_trips() -> None:
    job = minimal_job().to_dict()
    job["spec"]["training"] = {"globalBatchTokens": 65536}
    parsed = parse_object(job)
    assert parse_object(parsed.to_dict()) == parsed


def test_status_ignores_unknown_fields() -> None:
    job = minimal_job().to_dict()
    job["status"] = {"phase": "Running", "progress": {"step": 3, "percent": 30}, "future": 1}
    parsed = parse_object(job)
    assert parsed.status.phase == "Running" and parsed.status.progress.percent == 30
