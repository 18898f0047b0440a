"""`kubectl sft` through the kubectl the control plane build makes, against the apiserver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubesft.operator.kube import Kube
from tests.support.cluster_objects import create, sft_job
from tests.support.controlplane import build_binaries

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def kubectl_sft() -> list[str]:
    """`kubectl sft`, with the venv's bin first on PATH so kubectl finds `kubectl-sft`."""
    return [str(build_binaries() / "kubectl"), "sft"]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_kubectl_sft_help_works_as_a_plugin(kubectl_sft: list[str]) -> None:
    result = run([*kubectl_sft, "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kubectl sft ")


def test_kubectl_sft_status_honours_kubeconfig_context_and_namespace(
    kubectl_sft: list[str], kube: Kube, namespace: str, kube_config: str
) -> None:
    create(kube, namespace, sft_job(namespace, "plugged"))
    kube.patch_status("sftjobs", namespace, "plugged", {"phase": "Queued"})
    flags = ["-n", namespace, "--kubeconfig", kube_config, "--context", "kubesft-local"]
    result = run([*kubectl_sft, "status", "plugged", *flags])
    assert result.returncode == 0, result.stderr
    assert "plugged" in result.stdout and "Queued" in result.stdout
    elsewhere = run(
        [*kubectl_sft, "status", "plugged", "-n", "default", "--kubeconfig", kube_config]
    )
    assert elsewhere.returncode != 0
    assert "SFTJob default/plugged not found" in elsewhere.stderr
