"""`kubesft status` renders what a person checks first."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from kubesft.api import SFTJob, parse_object
from kubesft.status_view import render_status, sparkline
from tests.support.invalid_manifests import valid_job


def test_sparkline_spans_the_range() -> None:
    assert sparkline([3.0, 2.0, 1.0]) == "█▄▁"
    assert sparkline([]) == "" and sparkline([1.0, 1.0]) == "▁▁"


def rendered(status: dict[str, Any]) -> str:
    """The `kubesft status` panel of an SFTJob with this status, as plain text."""
    obj = valid_job("demo")
    obj["metadata"]["namespace"] = "team"
    obj["status"] = status
    job = parse_object(obj)
    assert isinstance(job, SFTJob)
    console = Console(record=True, width=120)
    console.print(render_status(job))
    return console.export_text()


def test_status_panel_shows_progress_loss_and_samples() -> None:
    text = rendered(
        {
            "phase": "Running",
            "progress": {"step": 8, "totalSteps": 20, "percent": 40, "etaSeconds": 75},
            "metrics": {"trainLoss": 1.25, "evalLoss": 1.5, "lossHistory": [2.0, 1.5, 1.25]},
            "evaluation": {
                "samples": [{"prompt": "Reverse: kube", "before": "kube", "after": "ebuk"}]
            },
            "conditions": [{"type": "Running", "status": "True", "reason": "TrainerRunning"}],
        }
    )
    for expected in (
        "Running",
        "step 8/20",
        "40%",
        "ETA 1m15s",
        "1.25",
        "█",
        "ebuk",
        "TrainerRunning",
    ):
        assert expected in text, expected


def test_status_panel_compares_peak_gpu_memory_with_the_preflight_estimate() -> None:
    text = rendered(
        {
            "phase": "Running",
            "progress": {"step": 8, "totalSteps": 20, "percent": 40, "peakGpuMemoryGiB": 12.34},
            "preflight": {"estimatedGpuMemoryGiB": 14.0},
        }
    )

    assert "GPU memory peak 12.3 GiB (preflight estimate 14.0 GiB)" in text
