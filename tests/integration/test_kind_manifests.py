"""What `hack/kind/up` hands to helm and kubectl is accepted: the chart renders with its
--set values, and its volumes and tiny-model Job pass the apiserver's validation."""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.controlplane import build_binaries
from tests.unit.test_kind_up import ROOT, dry_run


def test_chart_renders_with_the_scripts_values(tmp_path: Path) -> None:
    (helm_command,) = [c for c in dry_run() if c.startswith("helm ")]
    words = shlex.split(helm_command)
    sets = [a for flag, a in itertools.pairwise(words) if flag == "--set"]
    env = {
        **os.environ,
        **{f"HELM_{k}_HOME": str(tmp_path / k) for k in ("CACHE", "CONFIG", "DATA")},
    }
    argv = [str(build_binaries() / "helm"), "template", "kubesft", str(ROOT / "helm" / "kubesft")]
    argv += [a for s in sets for a in ("--set", s)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "image: kubesft/operator:kind" in result.stdout
    assert "kubesft/trainer:kind" in result.stdout


@pytest.mark.usefixtures("crds_installed")
def test_volumes_and_tiny_model_job_pass_server_side_validation(kubectl, namespace: str) -> None:  # type: ignore[no-untyped-def]
    files = [
        "-f",
        str(ROOT / "examples/quickstart/data.yaml"),
        "-f",
        str(ROOT / "hack/kind/volumes.yaml"),
    ]
    result = kubectl("apply", "--dry-run=server", "-n", namespace, *files)
    assert result.returncode == 0, result.stderr
    assert "job.batch/tiny-model created (server dry run)" in result.stdout
