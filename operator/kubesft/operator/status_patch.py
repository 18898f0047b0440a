"""Status writes that touch only what changed (the trainer writes progress concurrently)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from kubesft.operator.kube import Kube, Manifest

log = logging.getLogger("kubesft.operator")


def status_dict(status: BaseModel | None) -> dict[str, Any]:
    if status is None:
        return {}
    out: dict[str, Any] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Top-level status fields whose value differs; removed fields become null."""
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def write_status(
    kube: Kube, plural: str, raw: Manifest, old: dict[str, Any], new: BaseModel, message: str
) -> None:
    """Patch what changed; on a phase change also post an Event and log the transition."""
    namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
    new_dict = status_dict(new)
    patch = changed_fields(old, new_dict)
    if patch:
        kube.patch_status(plural, namespace, name, patch)
    phase = new_dict.get("phase")
    if old.get("phase") != phase:
        kind = "Warning" if phase == "Failed" else "Normal"
        kube.event(raw, kind, str(phase), message)
        log.info("%s %s/%s: %s (%s)", raw.get("kind"), namespace, name, phase, message)
