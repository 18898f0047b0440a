"""Fixtures shared by the integration tests: the CRDs installed, and the operator's client."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from kubesft.api import KINDS
from kubesft.operator.kube import Kube

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def crds_installed(kubectl: Kubectl) -> None:
    """The generated CRDs applied (server-side) and Established."""
    for args in (
        ("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")),
        (
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{k.crd_name}" for k in KINDS],
        ),
    ):
        result = kubectl(*args)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def kube(kube_api: client.ApiClient, crds_installed: None) -> Kube:
    return Kube(kube_api)
