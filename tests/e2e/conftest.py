"""Fixtures for the full loop: a fake node that runs the pods kube-controller-manager creates.

The node runner (``tests/support/node_runner``) is a test double for the kubelet and the
container runtime only; see its module docstring for what it does and does not do.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.node_runner import NodeRunner
from tests.support.sft_cluster import CLAIMS, ROOT, Cluster
from tests.support.tiny_model import build_tiny_model, build_tiny_tokenizer

_NODE_RUNNER = pytest.StashKey[NodeRunner]()


@pytest.fixture(scope="session")
def node_runner(
    kube_config: str,
    controller_manager: None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[NodeRunner]:
    """A started fake node (8 ``nvidia.com/gpu``) for the session; stopped at the end."""
    # Under the repository, not /tmp: pods may mount an emptyDir at /tmp (the chart's
    # operator does), which would hide the runner's own files from later bind mounts.
    root = ROOT / ".cache" / f"e2e-node-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    runner = NodeRunner(kube_config, root, extended_resources={"nvidia.com/gpu": "8"})
    runner.start()
    request.config.stash[_NODE_RUNNER] = runner
    try:
        yield runner
    finally:
        del request.config.stash[_NODE_RUNNER]
        runner.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, attach its pods' container logs (its namespace's, if it has one)."""
    report: pytest.TestReport = yield
    runner = item.config.stash.get(_NODE_RUNNER, None)
    if report.failed and runner is not None:
        namespace = getattr(item, "funcargs", {}).get("namespace")
        scope = namespace if isinstance(namespace, str) else None
        for key, tail in runner.log_tails(scope).items():
            report.sections.append((f"container {key} log (tail)", tail or "(empty)"))
    return report


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and its locally trained tokenizer, as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def cluster(
    kube_api: client.ApiClient,
    node_runner: NodeRunner,
    namespace: str,
    kubectl: Any,
    tiny_model_files: Path,
) -> Cluster:
    crds = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert crds.returncode == 0, crds.stderr
    c = Cluster(kube_api, node_runner, namespace)
    for claim in CLAIMS:  # the objects; the node runner's directories stand in for volumes
        c.create_claim(claim)
    models = c.pvc("kubesft-models") / "tiny-llama"
    models.parent.mkdir(parents=True, exist_ok=True)
    if not models.exists():
        models.symlink_to(tiny_model_files)
    return c
