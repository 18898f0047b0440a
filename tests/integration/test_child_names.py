"""Children that cannot be created: refused at admission when the name is the cause, else a
Failed condition and a Warning Event naming the object and the apiserver's message."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesft.api import GROUP, SFT_JOB, VERSION
from kubesft.operator.kube import Kube
from kubesft.operator.reconciler import Reconciler
from tests.support.cluster_objects import (
    CONFIG,
    UNSCHEDULABLE,
    create,
    make_dataset_ready,
    sft_job,
)
from tests.support.invalid_manifests import valid_dataset

POLICY_MESSAGE = "trainer Jobs named refused-train are not allowed in this namespace"


def test_dotted_name_with_two_nodes_is_refused_at_admission(kube: Kube, namespace: str) -> None:
    obj = sft_job(namespace, "mn.v1", resources={**UNSCHEDULABLE, "nodes": 2, "gpus": 1})
    with pytest.raises(ApiException) as info:
        create(kube, namespace, obj)
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert "metadata.name must be a DNS-1035 label" in message, message
    assert kube.get_custom(SFT_JOB.plural, namespace, "mn.v1") is None
    create(kube, namespace, sft_job(namespace, "mn.v1"))  # one node: no Service, a valid name


@pytest.fixture
def job_policy(kube_api: client.ApiClient, namespace: str) -> Iterator[None]:
    """A ValidatingAdmissionPolicy (reason Invalid: HTTP 422) refusing one Job name here."""
    admission = client.AdmissionregistrationV1Api(kube_api)
    name = f"refuse-jobs-{namespace}"
    policy: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["batch"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["jobs"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "object.metadata.name != 'refused-train'",
                    "message": POLICY_MESSAGE,
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    try:
        _wait_until_enforced(client.BatchV1Api(kube_api), namespace)
        yield
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)


def _wait_until_enforced(batch: client.BatchV1Api, namespace: str) -> None:
    """Policies take effect once the apiserver's informers saw them: probe with a dry run."""
    probe = {
        "metadata": {"name": "refused-train"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }
    for _ in range(100):
        try:
            batch.create_namespaced_job(namespace, probe, dry_run="All")
        except ApiException as err:
            if err.status == 422:
                return
            raise
        time.sleep(0.1)
    raise AssertionError("the ValidatingAdmissionPolicy never took effect")


def test_refused_child_becomes_a_condition_and_a_warning_naming_it(
    kube: Kube, namespace: str, job_policy: None
) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(kube, namespace, sft_job(namespace, "refused"))
    assert Reconciler(kube, CONFIG).job(namespace, "refused") is None
    obj = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, SFT_JOB.plural, "refused"
    )
    st = obj["status"]
    failed = {c["type"]: c for c in st["conditions"]}["Failed"]
    assert st["phase"] == "Failed" and failed["reason"] == "InvalidSpec", st
    named = f"the apiserver refused Job {namespace}/refused-train"
    assert named in failed["message"] and POLICY_MESSAGE in failed["message"], failed
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=refused"
    ).items
    assert any(e.type == "Warning" and named in e.message for e in events), events


def test_child_blocked_by_quota_gets_a_warning_naming_it_and_is_retried(
    kube: Kube, namespace: str, controller_manager: None
) -> None:
    quota = {
        "metadata": {"name": "no-jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    kube.core.create_namespaced_resource_quota(namespace, quota)
    for _ in range(100):  # the quota controller fills in status before admission uses it
        if kube.core.read_namespaced_resource_quota("no-jobs", namespace).status.hard:
            break
        time.sleep(0.1)
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(kube, namespace, sft_job(namespace, "quota"))
    assert Reconciler(kube, CONFIG).job(namespace, "quota") is None  # an API error: retried
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=quota"
    ).items
    named = f"the apiserver could not create Job {namespace}/quota-train"
    warnings = [e.message for e in events if e.type == "Warning" and e.reason == "FailedCreate"]
    assert any(named in m and "exceeded quota" in m for m in warnings), warnings
    obj = kube.get_custom(SFT_JOB.plural, namespace, "quota")
    assert obj is not None and (obj.get("status") or {}).get("phase") != "Failed"
    kube.core.delete_namespaced_resource_quota("no-jobs", namespace)
    for _ in range(100):  # admission sees the quota gone once its informer does
        if Reconciler(kube, CONFIG).job(namespace, "quota") == "Queued":
            break
        time.sleep(0.1)
    assert kube.get("Job", namespace, "quota-train") is not None
