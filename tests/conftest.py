"""Shared fixtures: a Kubernetes API for integration and e2e tests, and marker plumbing.

By default the tests start the local control plane (``tests/support/controlplane.py``) once
per session. Set ``KUBESFT_TEST_KUBECONFIG=<path>`` to run against an existing cluster
(kind or real) instead; set ``KUBESFT_KEEP_CONTROLPLANE=1`` to keep the local control
plane's directory (logs, etcd data) after the session.

Nothing here skips when the control plane cannot be built: a missing Go toolchain is an
ERROR whose message says what to install, so CI never goes green by silently testing less.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.controlplane import ControlPlane, build_binaries, start_control_plane
from tests.support.operator_process import OperatorProcess

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

TESTS_DIR = Path(__file__).resolve().parent
_CONTROL_PLANE = pytest.StashKey[ControlPlane]()

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Cluster:
    """Where the tests talk to: a kubeconfig, a kubectl, and the local control plane if ours."""

    kubeconfig: str
    kubectl: str | None
    local: ControlPlane | None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by directory, so `-m "not integration"` needs no per-file boilerplate."""
    for item in items:
        path = Path(str(item.path)).resolve()
        parts = path.relative_to(TESTS_DIR).parts if path.is_relative_to(TESTS_DIR) else ()
        if parts[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        elif parts[:1] == ("e2e",):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed cluster test, attach the tail of each control-plane log to the report."""
    report: pytest.TestReport = yield
    cluster_test = item.get_closest_marker("integration") or item.get_closest_marker("e2e")
    control_plane = item.config.stash.get(_CONTROL_PLANE, None)
    if report.failed and cluster_test and control_plane is not None:
        for name, tail in control_plane.log_tails().items():
            report.sections.append((f"{name} log (tail)", tail))
    return report


@pytest.fixture(scope="session")
def _cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    external = os.environ.get("KUBESFT_TEST_KUBECONFIG")
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"KUBESFT_TEST_KUBECONFIG={external} is not a file")
        yield Cluster(str(path), shutil.which("kubectl"), None)
        return
    control_plane = start_control_plane(build_binaries())
    request.config.stash[_CONTROL_PLANE] = control_plane
    try:
        yield Cluster(str(control_plane.kubeconfig), control_plane.binary("kubectl"), control_plane)
    finally:
        keep = os.environ.get("KUBESFT_KEEP_CONTROLPLANE", "") not in ("", "0")
        control_plane.stop(keep=keep)
        del request.config.stash[_CONTROL_PLANE]


@pytest.fixture(scope="session")
def kube_config(_cluster: Cluster) -> str:
    """Path to an admin kubeconfig for the cluster under test."""
    return _cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_api(kube_config: str) -> Iterator[ApiClient]:
    """A ``kubernetes.client.ApiClient`` for the cluster under test."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=kube_config)
    yield client
    client.close()


@pytest.fixture(scope="session")
def controller_manager(_cluster: Cluster) -> None:
    """Ensure kube-controller-manager runs (Jobs, GC, ServiceAccounts); external: no-op."""
    if _cluster.local is not None:
        _cluster.local.start_controller_manager()


@pytest.fixture(scope="session")
def kubectl(_cluster: Cluster) -> Kubectl:
    """Run kubectl against the cluster under test: ``kubectl("get", "ns", check=True)``."""

    def run(
        *args: str, check: bool = False, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if _cluster.kubectl is None:
            raise FileNotFoundError("kubectl is not on PATH (needed with KUBESFT_TEST_KUBECONFIG)")
        argv = [_cluster.kubectl, f"--kubeconfig={_cluster.kubeconfig}", *args]
        return subprocess.run(
            argv, capture_output=True, text=True, input=input, timeout=timeout, check=check
        )

    return run


@pytest.fixture
def operator(kube_config: str, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as a process watching the test's namespace (integration and e2e)."""
    op = OperatorProcess(kube_config, namespace, tmp_path / "operator.log")
    op.start()
    op.wait_started()
    yield op
    op.stop()


@pytest.fixture
def namespace(kube_api: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards (not waited for)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_api)
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise
