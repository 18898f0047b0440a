"""examples/mixture/: its data is what make_data.py writes, and its job reads what the issue
asks of a mixture (two tasks, a text replay member, a retention set)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import yaml

from kubesft.api import SFTDataset, SFTJob, parse_object

MIXTURE = Path(__file__).resolve().parents[2] / "examples" / "mixture"


def test_data_yaml_is_what_make_data_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.yaml is generated: a hand edit (or a changed generator) shows here."""
    out = tmp_path / "data.yaml"
    monkeypatch.setattr(sys, "argv", ["make_data.py", str(out)])
    runpy.run_path(str(MIXTURE / "make_data.py"), run_name="__main__")
    assert out.read_text() == (MIXTURE / "data.yaml").read_text()


def test_the_job_mixes_two_tasks_with_text_replay_and_scores_a_held_out_text_set() -> None:
    docs = [d for p in sorted(MIXTURE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    objects = [parse_object(d) for d in docs if d and d["kind"] != "ConfigMap"]
    datasets = {o.metadata.name: o for o in objects if isinstance(o, SFTDataset)}
    (job,) = [o for o in objects if isinstance(o, SFTJob)]
    weights = {m.name: m.weight for m in job.spec.mixture()}
    assert weights == {"chat": 0.6, "code": 0.35, "general-text": 0.05}
    assert datasets["general-text"].spec.format == "text"
    retention = job.spec.evaluation.retention
    assert retention is not None and datasets[retention.name].spec.format == "text"
    assert set(job.spec.dataset_names()) == set(datasets)
    keys = {ds.spec.source.config_map.key for ds in datasets.values() if ds.spec.source.config_map}
    assert keys == {"chat.jsonl", "code.jsonl", "general.jsonl", "held.jsonl"}
