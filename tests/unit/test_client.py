"""kubesft.client parts that need no cluster: YAML loading and the metrics record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubesft.api import InvalidSpec, SFTDataset, SFTJob
from kubesft.client import load_yaml, read_metrics

ROOT = Path(__file__).resolve().parents[2]


def test_load_yaml_reads_a_folder_of_examples_as_models() -> None:
    models = load_yaml(ROOT / "examples" / "quickstart")
    kinds = sorted(m["kind"] if isinstance(m, dict) else type(m).__name__ for m in models)
    assert kinds == ["ConfigMap", "SFTDataset", "SFTJob"]
    assert sum(isinstance(m, (SFTDataset, SFTJob)) for m in models) == 2


def test_load_yaml_names_every_bad_field_of_every_document() -> None:
    job = "apiVersion: kubesft.io/v1alpha1\nkind: SFTJob\nmetadata: {name: x}\nspec: {}\n"
    text = f"kind: ConfigMap\napiVersion: v1\n---\n{job}"
    with pytest.raises(InvalidSpec) as err:
        load_yaml(text)
    problems = err.value.problems
    assert problems[0] == "document 1: metadata.name is required"
    assert "document 2: spec.model is required" in problems


def test_read_metrics_reads_the_trainers_record_and_skips_a_torn_line(tmp_path: Path) -> None:
    lines = [json.dumps({"type": "train", "step": s, "trainLoss": 3.0 - s}) for s in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"type": "tr')
    assert [r["trainLoss"] for r in read_metrics(tmp_path)] == [2.0, 1.0]
    assert read_metrics(tmp_path / "metrics.jsonl") == read_metrics(str(tmp_path) + "/")
