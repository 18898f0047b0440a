"""Results of a finished run in the output directory: eval.json and loss.png, and the
`evaluation` status field."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubesft.api.job_status import EvaluationResult, Sample
from kubesft.api.mixture import DatasetEval
from kubesft_trainer.sinks import write_atomic

if TYPE_CHECKING:  # keeps this module free of torch, which evaluate imports
    from kubesft_trainer.evaluate import EvalResult

EVAL_FILE = "eval.json"
PLOT_FILE = "loss.png"


def rounded(value: float | None) -> float | None:
    """Six significant digits (status columns stay readable); NaN/inf become missing,
    since JSON has neither and a diverged loss is better reported as absent."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def eval_metrics(result: EvalResult) -> dict[str, float | None]:
    """`evalLoss`, `perplexity`, `tokenAccuracy` of one evaluation, rounded."""
    return {
        "evalLoss": rounded(result.loss),
        "perplexity": rounded(result.perplexity),
        "tokenAccuracy": rounded(result.token_accuracy),
    }


def dataset_evals(result: EvalResult) -> list[DatasetEval]:
    """Each member's eval loss and graded tokens (a mixture; [] for one dataset); a
    non-finite loss is left out, as `rounded` leaves it out of the overall metrics."""
    evals = []
    for name, each in result.by_dataset.items():
        loss = rounded(each.loss)
        if loss is not None:
            evals.append(DatasetEval(name=name, eval_loss=loss, tokens=each.tokens))
    return evals


def prompt_text(prompt: Mapping[str, Any] | str) -> str:
    """What a human reads as the prompt: the last user message, or the prompt string."""
    if isinstance(prompt, str):
        return prompt
    if "messages" in prompt:
        users = [m["content"] for m in prompt["messages"] if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(prompt.get("prompt", ""))


def evaluation_status(
    final: EvalResult,
    prompts: Sequence[Mapping[str, Any] | str],
    before_samples: Sequence[str],
    after_samples: Sequence[str],
) -> EvaluationResult:
    """The `evaluation` status field: final metrics and before/after samples."""
    return EvaluationResult.model_validate(
        {
            **eval_metrics(final),
            **_by_dataset(final),
            "samples": [
                Sample(prompt=prompt_text(p), before=b, after=a)
                for p, b, a in zip(prompts, before_samples, after_samples, strict=True)
            ],
        }
    )


def write_eval_json(
    output_dir: str | Path,
    before_samples: Sequence[str],
    after_samples: Sequence[str],
    prompts: Sequence[Mapping[str, Any] | str],
    final: EvalResult,
    *,
    references: Sequence[str] | None = None,
) -> Path:
    """eval.json: final metrics, and each prompt with its reference and both generations."""
    refs: Sequence[str | None] = references if references is not None else [None] * len(prompts)
    doc = {
        "metrics": {
            **eval_metrics(final),
            "tokens": final.tokens,
            **_by_dataset(final),
        },
        "samples": [
            {"prompt": p, "promptText": prompt_text(p), "reference": r, "before": b, "after": a}
            for p, r, b, a in zip(prompts, refs, before_samples, after_samples, strict=True)
        ],
    }
    path = Path(output_dir) / EVAL_FILE
    write_atomic(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    return path


def _by_dataset(result: EvalResult) -> dict[str, Any]:
    evals = dataset_evals(result)
    return {"byDataset": [d.model_dump(by_alias=True) for d in evals]} if evals else {}


def write_loss_plot(output_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """loss.png: train and eval loss against the optimizer step."""
    # Imported here: matplotlib is slow to import and only the end of a run needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for kind, key, style in (("train", "trainLoss", "-"), ("eval", "evalLoss", "o-")):
        points = [
            (r["step"], r[key]) for r in records if r["type"] == kind and r.get(key) is not None
        ]
        if points:
            steps, losses = [p[0] for p in points], [p[1] for p in points]
            axes.plot(steps, losses, style, label=f"{kind} loss")
    for label, points in _per_dataset_points(records).items():
        steps, losses = [p[0] for p in points], [p[1] for p in points]
        axes.plot(steps, losses, "--", marker=".", label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend()
    path = Path(output_dir) / PLOT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _per_dataset_points(
    records: Sequence[Mapping[str, Any]],
) -> dict[str, list[tuple[int, float]]]:
    """Eval loss per member and the retention loss, by step, from the eval records."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record["type"] != "eval":
            continue
        for name, values in (record.get("datasets") or {}).items():
            if values.get("evalLoss") is not None:
                lines.setdefault(f"eval loss ({name})", []).append(
                    (record["step"], values["evalLoss"])
                )
        retention = record.get("retention") or {}
        if retention.get("loss") is not None:
            label = f"retention loss ({retention.get('name')})"
            lines.setdefault(label, []).append((record["step"], retention["loss"]))
    return lines
