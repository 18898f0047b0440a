"""Status writes that touch only what changed (the trainer writes progress concurrently)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
