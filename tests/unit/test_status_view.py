"""`kubesft status` renders what a person checks first."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from kubesft.api import SFTJob, parse_object
from kubesft.status_view import output_location, render_status, sparkline
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


def test_output_and_best_checkpoint_are_shown_on_the_claim_not_in_the_pod() -> None:
    text = rendered(
        {
            "phase": "Succeeded",
            "output": {"path": "/output/run/model", "kind": "adapter"},
            "bestCheckpoint": "/output/run/checkpoints/step-10",
        }
    )

    assert "output: pvc://outputs/run/model (adapter)" in text
    assert "best checkpoint: pvc://outputs/run/checkpoints/step-10" in text
    assert "/output/run" not in text


def test_s3_output_is_shown_as_its_url() -> None:
    job = valid_job("demo")
    job["spec"]["output"] = {"url": "s3://bucket/runs/a"}
    parsed = parse_object(job)
    assert isinstance(parsed, SFTJob)
    assert output_location(parsed.spec, "s3://bucket/runs/a/model") == "s3://bucket/runs/a/model"


def test_samples_and_messages_show_control_characters_escaped_and_markup_verbatim() -> None:
    sample = {"prompt": "say [bold]hi[/bold]", "before": "\x1b[2J\x1b[31mred", "after": "a\rb\x07"}
    text = rendered(
        {
            "phase": "Running",
            "evaluation": {"samples": [sample]},
            "conditions": [{"type": "Failed", "status": "True", "message": "bad\x1b]0;title\x07"}],
        }
    )

    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    for shown in (
        "\\x1b[2J\\x1b[31mred",
        "a\\x0db\\x07",
        "say [bold]hi[/bold]",
        "bad\\x1b]0;title",
    ):
        assert shown in text, (shown, text)


def test_no_eta_unless_running() -> None:
    progress = {"step": 8, "totalSteps": 20, "percent": 40, "etaSeconds": 75}
    assert "ETA" in rendered({"phase": "Running", "progress": progress})
    for phase in ("Suspended", "Queued", "Failed"):
        text = rendered({"phase": phase, "progress": progress})
        assert "ETA" not in text and "step 8/20" in text, phase
