"""The generated CRDs on a real kube-apiserver: installed, enforcing, and listed by kubectl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesft.api import GROUP, KINDS, SFT_DATASET, SFT_JOB, VERSION
from tests.support.invalid_manifests import CASES, InvalidCase, valid_job

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed: {result.stderr}"
    return result.stdout


def _create(api: client.ApiClient, namespace: str, obj: dict[str, Any]) -> Any:
    plural = SFT_JOB.plural if obj["kind"] == "SFTJob" else SFT_DATASET.plural
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, obj, field_validation="Strict"
    )


def test_both_crds_become_established(crds_installed: None, kube_api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(kube_api)
    for kind in KINDS:
        crd = ext.read_custom_resource_definition(kind.crd_name)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions


EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_is_accepted(
    path: Path, crds_installed: None, kubectl: Kubectl, namespace: str
) -> None:
    out = _ok(kubectl("create", "-n", namespace, "-f", str(path), "-o", "name"))
    kinds = {d["kind"] for d in yaml.safe_load_all(path.read_text()) if d}
    for kind in kinds:
        assert kind.lower() in out.lower(), out


def test_examples_cover_both_kinds() -> None:
    kinds = {d["kind"] for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d}
    assert {"SFTJob", "SFTDataset"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_manifest_is_rejected_naming_the_field(
    case: InvalidCase, crds_installed: None, kube_api: client.ApiClient, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        _create(kube_api, namespace, case.manifest())
    assert info.value.status in (400, 422), info.value.body  # 400: strict decoding
    message = json.loads(info.value.body)["message"]
    assert case.field in message, f"{case.field!r} not named in: {message}"


def _patch_status(kubectl: Kubectl, namespace: str, ref: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    _ok(kubectl("patch", "-n", namespace, ref, "--subresource=status", "--type=merge", "-p", patch))


def test_kubectl_get_sft_lists_both_kinds_with_columns(
    crds_installed: None, kubectl: Kubectl, namespace: str
) -> None:
    _ok(kubectl("create", "-n", namespace, "-f", str(ROOT / "examples/quickstart")))
    _patch_status(kubectl, namespace, "sftds/quickstart", {"phase": "Ready", "stats": {"rows": 10}})
    _patch_status(
        kubectl,
        namespace,
        "sftj/quickstart",
        {
            "phase": "Running",
            "progress": {"step": 8, "totalSteps": 20, "percent": 40},
            "metrics": {"trainLoss": 1.25, "evalLoss": 1.5},
        },
    )
    out = _ok(kubectl("get", "sft", "-n", namespace))
    lines = [line.split() for line in out.splitlines() if line.strip()]
    headers = [line for line in lines if line[0] == "NAME"]
    assert ["NAME", "PHASE", "PROGRESS", "LOSS", "EVAL", "AGE"] in headers, out
    assert ["NAME", "PHASE", "ROWS", "AGE"] in headers, out
    rows = {line[0]: line[1:] for line in lines if line[0] != "NAME"}
    assert rows["sftjob.kubesft.io/quickstart"][:4] == ["Running", "40", "1.25", "1.5"], out
    assert rows["sftdataset.kubesft.io/quickstart"][:2] == ["Ready", "10"], out
    wide = _ok(kubectl("get", "sftj", "-n", namespace, "-o", "wide"))
    assert "tiny-llama" in wide and "full" in wide, wide


def test_started_job_rejects_changes_to_what_is_trained(
    crds_installed: None, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    _create(kube_api, namespace, valid_job("immutable"))

    def patch(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = json.dumps({"spec": spec})
        return kubectl("patch", "-n", namespace, "sftj/immutable", "--type=merge", "-p", body)

    _ok(patch({"training": {"learningRate": 0.002}}))  # not started yet: allowed
    _patch_status(kubectl, namespace, "sftj/immutable", {"startTime": "2026-01-01T00:00:00Z"})
    rejected = patch({"training": {"learningRate": 0.003}})
    assert rejected.returncode != 0
    assert "spec.training" in rejected.stderr and "after the job started" in rejected.stderr
    rejected = patch({"model": {"name": "other/model"}})
    assert rejected.returncode != 0 and "spec.model" in rejected.stderr
    _ok(patch({"suspend": True, "ttlSecondsAfterFinished": 60}))  # operational fields stay open
