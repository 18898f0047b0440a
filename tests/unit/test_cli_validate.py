"""`kubesft validate`: the same verdicts as the apiserver, offline, naming the same field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubesft.cli import main
from tests.support.invalid_manifests import CASES, InvalidCase, valid_dataset, valid_job

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_validate_rejects_each_invalid_manifest_naming_its_field(
    case: InvalidCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{case.id}.yaml"
    path.write_text(yaml.safe_dump(case.manifest()))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    # Lines read `<file>: <Kind>/<name>: <field>: <problem>` or `... <field> is required`.
    named = {line.split(": ", 2)[2].split(":")[0].split(" ")[0] for line in err.splitlines()}
    assert case.field in named, err


def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert f"{len(EXAMPLES)} file(s) valid" in capsys.readouterr().out


def test_validate_reports_unreadable_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: SFTJob\n  bad: [indent\n")
    assert main(["validate", str(path)]) == 1
    assert "cannot read YAML" in capsys.readouterr().err


@pytest.mark.parametrize("eval_fraction", [0, 0.1])
def test_validate_refuses_job_settings_its_dataset_leaves_without_effect(
    eval_fraction: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's precheck, offline: earlyStopping needs an eval split."""
    dataset, job = valid_dataset("data"), valid_job("reads-eval")
    dataset["spec"]["split"] = {"evalFraction": eval_fraction}
    job["spec"]["dataset"] = {"name": "data"}
    job["spec"]["training"]["earlyStopping"] = {"patience": 2}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump_all([dataset, job]))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    if eval_fraction:
        assert code == 0, err
    else:
        assert code == 1
        assert f"{path}: SFTJob/reads-eval: spec.training.earlyStopping: needs eval loss" in err


def test_validate_refuses_retention_when_no_mixture_member_has_an_eval_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The precheck over a mixture: every member given, none with an eval split."""
    members = [valid_dataset(name) for name in ("chat", "code", "held")]
    for member in members:
        member["spec"]["split"] = {"evalFraction": 0}
    job = valid_job("mix")
    del job["spec"]["dataset"]
    job["spec"]["datasets"] = [{"name": "chat", "weight": 3}, {"name": "code"}]
    job["spec"]["evaluation"] = {"retention": {"name": "held"}}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump_all([*members, job]))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: SFTJob/mix: spec.evaluation.retention: " in err
    assert "no member of spec.datasets has an eval split (SFTDatasets 'chat', 'code'" in err
    members[1]["spec"]["split"] = {"evalFraction": 0.2}
    path.write_text(yaml.safe_dump_all([*members, job]))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
