"""What the benchmarks ran on, and the numbers MFU is measured against.

`machine_info` goes into every results JSON. `measure_matmul_peak` is the CPU stand-in for
a datasheet peak: the best fp32 GEMM rate torch reaches here with all its threads, so an
MFU of 100% would mean training ran as fast as a large square matmul. `training_flops`
counts the useful FLOPs of a packed step: 6 per parameter per token (forward and
backward) plus causal attention within each example, not the masked-out cross-example
part that an SDPA kernel with a block-diagonal mask still computes.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "trl")


def cpu_model() -> str:
    """Model name, with family/model numbers (a VM may show only "AMD EPYC")."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    name = fields.get("model name", "unknown")
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    if "avx512f" in fields.get("flags", "").split():
        name += ", AVX-512"
    return name


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, package versions and the date, for a results file."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cpuCores": os.cpu_count(),
        "torchThreads": torch.get_num_threads(),
        "memoryGiB": round(memory_gib, 1),
        "loadAverage1m": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": versions,
    }


def measure_matmul_peak(
    size: int = 2048, repeats: int = 8, *, device: str = "cpu", dtype: str = "float32"
) -> float:
    """Best GEMM rate (FLOP/s) of `size`² matrices over `repeats` tries, on `device`."""
    import torch

    a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    torch.mm(a, b)  # warm up the kernel and the thread pool
    sync()
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


DATASHEET_PEAK_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
"""Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts), by name fragment."""


def datasheet_peak() -> tuple[str, float] | None:
    """The GPU's name and its datasheet bf16 peak, when known."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    for fragment, flops in DATASHEET_PEAK_FLOPS.items():
        if fragment in name:
            return name, flops
    return None


def model_shape(model_dir: str) -> dict[str, int]:
    """Parameter counts and attention width of a saved causal LM (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {
        "parameters": total,
        "embeddingParameters": embedding,
        # The input embedding is a lookup, not a matmul; the LM head is a matmul and counts.
        "matmulParameters": total - embedding,
        "layers": config.num_hidden_layers,
        "attentionWidth": config.num_attention_heads * head_dim,
    }


def training_flops(shape: dict[str, int], example_lengths: Iterable[int]) -> float:
    """Useful FLOPs of forward + backward over examples of these lengths.

    6 N per token for the weights, and for causal attention inside each example of
    length n: QKᵀ and AV cost 2·2·d·n(n+1)/2 forward per layer, three times that in total.
    """
    flops = 0.0
    for n in example_lengths:
        flops += 6 * shape["matmulParameters"] * n
        flops += 6 * shape["layers"] * shape["attentionWidth"] * n * (n + 1)
    return flops
