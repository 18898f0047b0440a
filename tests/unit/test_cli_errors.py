"""`kubesft` as a user runs it (a subprocess): every failure is one line, no traceback, rc 1.

Failures that need a cluster (no such SFTJob, logs not served) are in
tests/integration/test_cli_cluster.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.controlplane import free_port
from tests.support.invalid_manifests import valid_job

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def kubesft(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "kubesft.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's only line, after checking it is one (and no traceback, rc != 0)."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose server is a closed port on loopback."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u", "namespace": "x"}}],
        "current-context": "here",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("command", ["status", "logs"])
def test_no_kubeconfig_is_one_line(command: str, tmp_path: Path) -> None:
    line = one_line_failure(kubesft(command, "x", KUBECONFIG=str(tmp_path / "none")))
    assert line.startswith(f"kubesft {command}: no usable kubeconfig"), line


@pytest.mark.parametrize("command", ["status", "logs"])
def test_unreachable_api_server_is_one_line(command: str, tmp_path: Path) -> None:
    config = unreachable_kubeconfig(tmp_path)
    line = one_line_failure(kubesft(command, "x", "--kubeconfig", str(config)))
    assert "cannot reach the Kubernetes API server" in line, line


def test_unknown_context_is_one_line(tmp_path: Path) -> None:
    config = unreachable_kubeconfig(tmp_path)
    line = one_line_failure(kubesft("status", "x", "--kubeconfig", str(config), "--context", "y"))
    assert "context 'y' not in the kubeconfig" in line, line


def test_validate_takes_a_folder_and_stdin(tmp_path: Path) -> None:
    folder = kubesft("validate", str(QUICKSTART))
    assert folder.returncode == 0, folder.stderr
    assert "file(s) valid (2 kubesft object(s))" in folder.stdout, folder.stdout

    piped = kubesft("validate", "-", stdin=(QUICKSTART / "job.yaml").read_text())
    assert piped.returncode == 0 and "(1 kubesft object(s))" in piped.stdout, piped

    broken = valid_job("x")
    broken["spec"]["training"] = {"learningRate": -1}
    line = one_line_failure(kubesft("validate", "-", stdin=yaml.safe_dump(broken)))
    assert line.startswith("<stdin>: SFTJob/x: spec.training.learningRate"), line


@pytest.mark.parametrize(
    ("name", "problem"),
    [("Quick_Start", "RFC 1123 subdomain"), (None, "metadata.name: is required"),
     ("a" * 60, "at most 52")],
)  # fmt: skip
def test_validate_checks_metadata_name_as_the_apiserver(
    name: str | None, problem: str, tmp_path: Path
) -> None:
    doc = valid_job("x")
    doc["metadata"]["name"] = name
    if name is None:
        del doc["metadata"]["name"]
    result = kubesft("validate", "-", stdin=yaml.safe_dump(doc))
    assert problem in one_line_failure(result), result.stderr


@pytest.mark.parametrize(
    ("argument", "problem"),
    [("no-such.yaml", "no such file or folder"), ("empty", "no .yaml, .yml or .json files")],
)
def test_validate_bad_paths_are_one_line(argument: str, problem: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = kubesft("validate", str(tmp_path / argument))
    assert problem in one_line_failure(result)


def test_unreadable_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: SFTJob\n  bad: [indent\n")
    assert "cannot read YAML" in one_line_failure(kubesft("validate", str(path)))


@pytest.mark.parametrize("command", ["status", "logs", "validate", "crds", "reference"])
def test_help_describes_each_command(command: str) -> None:
    top = kubesft("--help")
    assert top.returncode == 0 and re.search(rf"^ +{command}\b", top.stdout, re.M), top.stdout
    result = kubesft(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: kubesft " + command in result.stdout
