"""The models and the apiserver give the same verdict on each Kubernetes-format value.

Edge values of every format (`kubesft.api.formats`) go to both: the models (what
`kubesft validate` and the operator run) and the apiserver (a dry-run create through the
generated CRD). A verdict that differs is a bug in one of the two rule sets, with one
designed exception: the apiserver cannot run Jinja, so for inline chat templates it
refuses a subset of what the models refuse (a template ending inside an unclosed tag);
the operator parses every object with the models, so the rest fails as InvalidSpec
before any pod exists.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesft.api import GROUP, SFT_JOB, VERSION, InvalidSpec, parse_object
from tests.support.invalid_manifests import set_path, valid_job

VALUES: dict[str, list[Any]] = {
    "spec.resources.cpu": [
        "1",
        "500m",
        "1.5",
        ".5",
        "5.",
        "+1",
        "-0",
        "-1",
        "1e3",
        "1E-3",
        "1e1.5",
        "1Ki",
        "1ki",
        "1KB",
        "2u",
        "",
        " 1",
        "1\n",
        "0x10",
        "1.2.3",
    ],
    "spec.dataset.name": [
        "a",
        "a.b-c",
        "a..b",
        "-a",
        "a-",
        "A",
        "a_b",
        "a" * 253,
        "a" * 254,
        "a\n",
        "1a",
    ],
    "spec.resources.nodeSelector": [
        {"a": "b"},
        {"example.com/a": ""},
        {"a/b/c": "x"},
        {"/a": "x"},
        {"a": "-b"},
        {"a" * 63: "b" * 63},
        {"a" * 64: "b"},
        {"a": "b" * 64},
        {"Upper.Case/x": "y"},
        {"k8s.io/x_y.z": "a.b_c-d"},
    ],
    "spec.image": [
        "trainer",
        "trainer:1.0",
        "ghcr.io/org/trainer:1.0",
        "localhost:5000/t",
        "T",
        "a/B",
        "a:b:c",
        "a@sha256:" + "0" * 64,
        "a@sha256:0",
        "a__b",
        "a___b",
        "a--b",
        "[::1]:5000/t:x",
        "a:" + "t" * 128,
        "a:" + "t" * 129,
        "a/",
    ],
    "spec.output.pvc.path": [
        "",
        "a",
        "a/b",
        "a/b.c",
        "..a",
        "a..",
        ".",
        "..",
        "./a",
        "a/.",
        "a//b",
        "/a",
        "a/",
        "a/../b",
        "a b/c",
        "a\nb",
    ],
    "spec.model.chatTemplate": [
        "auto",
        "chatml",
        "llama3",
        "other",
        "{{ x }}",
        "{% if x %}y{% endif %}",
        "{{ x }",
        "{% if x %}",
        "x {{",
        "{% generation %}{{ x }}{% endgeneration %}",
    ],
}


def _cases() -> list[tuple[str, Any]]:
    return [(field, value) for field, values in VALUES.items() for value in values]


def _models_accept(obj: dict[str, Any]) -> bool:
    try:
        parse_object(obj)
    except InvalidSpec:
        return False
    return True


def _apiserver_accepts(api: client.ApiClient, namespace: str, obj: dict[str, Any]) -> bool:
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, SFT_JOB.plural, obj, dry_run="All"
        )
    except ApiException as err:
        assert err.status == 422, err.body
        return False
    return True


@pytest.mark.parametrize(("field", "value"), _cases(), ids=lambda v: repr(v)[:40])
def test_models_and_apiserver_agree(
    field: str, value: Any, crds_installed: None, kube_api: client.ApiClient, namespace: str
) -> None:
    obj = valid_job("formats")
    set_path(obj, field, copy.deepcopy(value))
    models, apiserver = _models_accept(obj), _apiserver_accepts(kube_api, namespace, obj)
    if field == "spec.model.chatTemplate":
        assert apiserver or not models  # never stricter than the models
    else:
        assert models == apiserver
