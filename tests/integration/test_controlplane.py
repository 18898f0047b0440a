"""The cluster fixtures give a real apiserver: version, RBAC with SA tokens, Jobs and GC.

These tests guard the test harness itself; when they fail, every other integration test
would fail for the same reason, so they say what is wrong with the cluster first.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def test_version(kube_api: client.ApiClient, kubectl: Kubectl) -> None:
    version = client.VersionApi(kube_api).get_code()
    if not os.environ.get("KUBESFT_TEST_KUBECONFIG"):
        assert version.git_version == "v1.35.4"
    assert kubectl("get", "namespaces", "-o", "name", check=True).stdout.count("namespace/") >= 3


def _as_token(admin: client.ApiClient, token: str) -> client.ApiClient:
    """An ApiClient for the same server and CA that authenticates with a bearer token."""
    conf = client.Configuration()
    conf.host = admin.configuration.host
    conf.ssl_ca_cert = admin.configuration.ssl_ca_cert
    # The whole header value: clients >= 36 look the prefix up under another key.
    conf.api_key = {"authorization": "Bearer " + token}
    return client.ApiClient(conf)


def test_rbac_is_enforced_for_service_account_tokens(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    meta = client.V1ObjectMeta(name="reader")
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=meta))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token("reader", namespace, request).status.token
    as_sa = client.CoreV1Api(_as_token(kube_api, token))

    with pytest.raises(ApiException) as denied:
        as_sa.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in str(denied.value.body)

    rule = client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=meta, rules=[rule]))
    binding = client.V1RoleBinding(
        metadata=meta,
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="Role", name="reader"
        ),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
    )
    rbac.create_namespaced_role_binding(namespace, binding)

    def allowed() -> bool:
        try:
            as_sa.list_namespaced_secret(namespace)
        except ApiException as err:
            assert err.status == 403
            return False
        return True

    wait_for("the RoleBinding to grant listing secrets", allowed, timeout=30)


@pytest.mark.usefixtures("controller_manager")
def test_job_creates_pod_and_background_deletion_collects_it(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core, batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
    container = client.V1Container(name="main", image="busybox:1.36", command=["true"])
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="hello"),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                # No node matches: the pod stays Pending even when an e2e node runner is up.
                spec=client.V1PodSpec(
                    containers=[container],
                    restart_policy="Never",
                    node_selector={"kubesft.io/test-node": "none"},
                )
            ),
        ),
    )
    created = batch.create_namespaced_job(namespace, job)
    selector = "batch.kubernetes.io/job-name=hello"

    def pods() -> list[client.V1Pod]:
        return list(core.list_namespaced_pod(namespace, label_selector=selector).items)

    # Needs the job controller, and the serviceaccount controller for the `default` SA.
    (pod,) = wait_for("the Job controller to create a Pod", pods)
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Job", "hello", created.metadata.uid)
    assert owner.controller
    assert pod.status.phase == "Pending"  # no matching node: nothing ever runs

    batch.delete_namespaced_job("hello", namespace, propagation_policy="Background")
    wait_for("the garbage collector to delete the Job's Pod", lambda: len(pods()) == 0)
