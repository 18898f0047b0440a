"""Owner references and object metadata shared by all builders."""

from __future__ import annotations

from typing import Any

from kubesft.api import API_VERSION, ObjectMeta


def owner_reference(kind: str, meta: ObjectMeta, api_version: str = API_VERSION) -> dict[str, Any]:
    """A controller reference: deleting the owner garbage-collects the child."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner],
    }
