"""`kubesft status` and `kubesft logs` against a real API server, run as a user runs them.

Each failure is one line on stderr, no traceback, exit 1 (see also tests/unit/test_cli_errors.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesft.api import GROUP, SFT_JOB, VERSION
from kubesft.operator.names import LABEL_JOB, TRAINER_CONTAINER
from tests.support.invalid_manifests import valid_job
from tests.unit.test_cli_errors import kubesft, one_line_failure


@pytest.fixture
def fake_node(kube_api: client.ApiClient) -> Iterator[str]:
    """A Node object with no kubelet behind it: the API server cannot fetch its logs."""
    core = client.CoreV1Api(kube_api)
    name = f"no-kubelet-{uuid.uuid4().hex[:6]}"
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    yield name
    core.delete_node(name)


def create_job(kube_api: client.ApiClient, namespace: str, name: str) -> None:
    doc: dict[str, Any] = valid_job(name)
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SFT_JOB.plural, doc)


@pytest.mark.parametrize("command", ["status", "logs"])
def test_missing_sftjob_is_one_line(
    command: str, kube_config: str, namespace: str, crds_installed: None
) -> None:
    result = kubesft(command, "nope", "-n", namespace, KUBECONFIG=kube_config)
    assert one_line_failure(result) == f"kubesft {command}: SFTJob {namespace}/nope not found"


def test_logs_of_a_job_without_pods_says_where_to_look(
    kube_api: client.ApiClient, kube_config: str, namespace: str, crds_installed: None
) -> None:
    create_job(kube_api, namespace, "waiting")
    result = kubesft("logs", "waiting", "-n", namespace, KUBECONFIG=kube_config)
    assert "has no trainer pods yet" in one_line_failure(result)


@pytest.mark.parametrize("follow", [[], ["-f"]], ids=["logs", "logs-f"])
def test_logs_not_served_by_the_node_is_one_line_naming_the_files(
    follow: list[str],
    kube_api: client.ApiClient,
    kube_config: str,
    namespace: str,
    crds_installed: None,
    fake_node: str,
) -> None:
    create_job(kube_api, namespace, "ran")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ran-train-0", "labels": {LABEL_JOB: "ran"}},
        "spec": {
            "nodeName": fake_node,
            "containers": [{"name": TRAINER_CONTAINER, "image": "trainer"}],
        },
    }
    core = client.CoreV1Api(kube_api)
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    try:  # made by kube-controller-manager when a test before this one started it
        core.create_namespaced_service_account(namespace, account)
    except client.ApiException as err:
        if err.status != 409:
            raise
    core.create_namespaced_pod(namespace, pod)

    result = kubesft("logs", "ran", "-n", namespace, *follow, KUBECONFIG=kube_config)

    line = one_line_failure(result)
    assert f"pod {namespace}/ran-train-0 are not served by its node {fake_node}" in line, line
    assert "logs/<namespace>/<pod>/<container>.log" in line
    assert result.stdout.startswith("==> pod ran-train-0 <==")
