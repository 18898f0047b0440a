"""`kubesft status` renders what a person checks first."""

from __future__ import annotations

import re
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


def rendered_mixture(status: dict[str, Any]) -> str:
    """The panel of a job over chat/code/general-text with retention on `held`."""
    obj = valid_job("demo")
    obj["metadata"]["namespace"] = "team"
    del obj["spec"]["dataset"]
    obj["spec"]["datasets"] = [
        {"name": "chat", "weight": 0.6},
        {"name": "code", "weight": 0.35},
        {"name": "general-text", "weight": 0.05},
    ]
    obj["spec"]["evaluation"] = {"retention": {"name": "held"}}
    obj["status"] = status
    job = parse_object(obj)
    assert isinstance(job, SFTJob)
    console = Console(record=True, width=140)
    console.print(render_status(job))
    return console.export_text()


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first` (cells: split on 2+ spaces)."""
    rows = [re.split(r"\s{2,}", ln.strip("│ ")) for ln in text.splitlines()]
    (found,) = [cells for cells in rows if cells[0] == first]
    return found


def test_mixture_plan_per_dataset_eval_loss_and_retention_are_shown() -> None:
    text = rendered_mixture(
        {
            "phase": "Running",
            "metrics": {
                "trainLoss": 1.2,
                "evalLoss": 1.5,
                "evalByDataset": [
                    {"name": "chat", "evalLoss": 1.25, "tokens": 640},
                    {"name": "code", "evalLoss": 1.875, "tokens": 320},
                ],
            },
            "mixture": [
                {
                    "name": "chat",
                    "weight": 0.6,
                    "examples": 40,
                    "examplesPerEpoch": 60,
                    "tokensPerEpoch": 3000,
                    "repeats": 1.5,
                },
                {
                    "name": "code",
                    "weight": 0.35,
                    "examples": 100,
                    "examplesPerEpoch": 35,
                    "tokensPerEpoch": 2100,
                    "repeats": 0.35,
                },
                {
                    "name": "general-text",
                    "weight": 0.05,
                    "examples": 10,
                    "examplesPerEpoch": 5,
                    "tokensPerEpoch": 900,
                    "repeats": 0.5,
                },
            ],
            "retention": {"name": "held", "lossBefore": 2.0, "loss": 2.25, "step": 40},
        }
    )
    assert "datasets chat, code, general-text · retention held" in text
    assert "mixture (by examples)" in text
    assert row(text, "chat") == ["chat", "60.0%", "40", "60", "3000", "x1.50"]
    assert row(text, "code") == ["code", "35.0%", "100", "35", "2100", "x0.35"]
    assert row(text, "general-text") == ["general-text", "5.0%", "10", "5", "900", "x0.50"]
    assert row(text, "eval loss")[1] == "1.5"
    assert row(text, "eval loss · chat") == ["eval loss · chat", "1.25", "640 tokens"]
    assert row(text, "eval loss · code")[1] == "1.875"
    assert row(text, "retention loss · held") == [
        "retention loss · held",
        "2 before -> 2.25",
        "+12.5% vs before training at step 40",
    ]


def test_before_the_trainer_draws_the_plan_the_spec_shares_are_shown() -> None:
    text = rendered_mixture({"phase": "WaitingForDataset"})
    assert row(text, "chat") == ["chat", "60.0%", "-", "-", "-", "-"]
    assert row(text, "general-text")[1] == "5.0%"
    assert "drawn by the trainer before its first step" in text
    assert "retention loss" not in text


def test_retention_before_training_only_and_final_per_dataset_eval() -> None:
    text = rendered_mixture(
        {
            "phase": "Succeeded",
            "evaluation": {"byDataset": [{"name": "chat", "evalLoss": 0.75}]},
            "retention": {"name": "held", "lossBefore": 2.0},
        }
    )
    assert row(text, "eval loss · chat")[1] == "0.75"
    assert row(text, "retention loss · held") == ["retention loss · held", "2 before"]


def test_a_single_dataset_job_shows_no_mixture() -> None:
    text = rendered({"phase": "Running", "metrics": {"evalLoss": 1.5}})
    assert "mixture" not in text and "dataset quickstart" in text
