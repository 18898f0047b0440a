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


def patch_status(
    kube: Kube, plural: str, raw: Manifest, old: dict[str, Any], new: BaseModel
) -> dict[str, Any]:
    """Patch the status fields that changed; returns the new status as a dict."""
    new_dict = status_dict(new)
    patch = changed_fields(old, new_dict)
    if patch:
        kube.patch_status(plural, raw["metadata"]["namespace"], raw["metadata"]["name"], patch)
    return new_dict


def post_event(kube: Kube, raw: Manifest, type_: str, reason: str, message: str) -> None:
    """An Event on the object, logged as well (the operator log tells the same story)."""
    meta = raw["metadata"]
    kube.event(raw, type_, reason, message)
    log.info("%s %s/%s: %s (%s)", raw.get("kind"), meta["namespace"], meta["name"], reason, message)


def write_status(
    kube: Kube, plural: str, raw: Manifest, old: dict[str, Any], new: BaseModel, message: str
) -> None:
    """Patch what changed; on a phase change also post an Event (Warning when Failed) with
    `message`, which should come from the condition that explains the new phase."""
    phase = patch_status(kube, plural, raw, old, new).get("phase")
    if old.get("phase") != phase:
        post_event(kube, raw, "Warning" if phase == "Failed" else "Normal", str(phase), message)
