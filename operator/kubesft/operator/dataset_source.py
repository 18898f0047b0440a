"""What an SFTDataset's data is made of right now, and the key its preparation is filed under.

A prepared generation is keyed on `g<metadata.generation>` plus, when anything else
decides the data, a short digest of it: the content of ConfigMap sources (the key's value,
so an edit of another key or a label does not re-prepare) and the `kubesft.io/refresh`
annotation. So editing a ConfigMap source re-prepares the dataset by itself, and so does
changing the annotation, the documented refresh for PVC, URL and hub sources whose content
the operator cannot see. A source or data claim that does not exist is reported by name
instead of leaving the preparation pod waiting for a volume.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubesft.api import SFTDataset
from kubesft.api.dataset import SOURCE_NOT_FOUND, DataSource
from kubesft.operator.config import OperatorConfig
from kubesft.operator.kube import Kube

REFRESH_ANNOTATION = "kubesft.io/refresh"
"""Set or change it (e.g. to a date) to prepare a PVC, URL or hub source again."""
DIGEST_CHARS = 6


@dataclass(frozen=True)
class SourceState:
    """The parts of the sources that decide the prepared data, and what is missing."""

    parts: dict[str, str] = field(default_factory=dict)
    """Field path → sha256 of the content it names (ConfigMap sources only)."""
    missing: list[str] = field(default_factory=list)
    """One message per missing object, naming it and the field that names it."""


def follows_source(obj: dict[str, Any]) -> bool:
    """Whether a finished SFTDataset (a raw object) must still be re-read on each resync:
    its ConfigMap sources may change without an event on it, and a missing object it
    waits for may appear."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    sources = [spec.get("source") or {}, (spec.get("split") or {}).get("evalSource") or {}]
    if any("configMap" in source for source in sources):
        return True
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("reason") == SOURCE_NOT_FOUND for c in conditions)


def preparation_key(dataset: SFTDataset, state: SourceState) -> str:
    """`g<generation>`, plus `-<digest>` of the source contents and refresh annotation."""
    key = f"g{dataset.metadata.generation or 1}"
    parts = dict(state.parts)
    refresh = dataset.metadata.annotations.get(REFRESH_ANNOTATION)
    if refresh:
        parts[REFRESH_ANNOTATION] = refresh
    if not parts:
        return key
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{key}-{digest[:DIGEST_CHARS]}"


def read_sources(kube: Kube, dataset: SFTDataset, config: OperatorConfig) -> SourceState:
    """Read the ConfigMaps and claims the preparation pod would mount."""
    ns = dataset.metadata.namespace or ""
    state = SourceState()
    sources = [("spec.source", dataset.spec.source)]
    if dataset.spec.split.eval_source is not None:
        sources.append(("spec.split.evalSource", dataset.spec.split.eval_source))
    for path, source in sources:
        _read_source(kube, ns, path, source, state)
    storage = dataset.spec.storage
    claim = storage.claim_name if storage else config.data_claim
    if kube.get("PersistentVolumeClaim", ns, claim) is None:
        named_by = "spec.storage.claimName" if storage else "the operator's data claim (dataClaim)"
        state.missing.append(
            f"PersistentVolumeClaim {claim!r} ({named_by}) for the prepared data does not "
            f"exist in namespace {ns}: create it or fix {named_by}"
        )
    return state


def _read_source(kube: Kube, ns: str, path: str, source: DataSource, state: SourceState) -> None:
    if source.config_map is not None:
        ref = source.config_map
        cm = kube.get("ConfigMap", ns, ref.name)
        if cm is None:
            state.missing.append(
                f"ConfigMap {ref.name!r} ({path}.configMap.name) does not exist in namespace "
                f"{ns}: create it or fix the name"
            )
            return
        value = _config_map_value(cm, ref.key)
        if value is None:
            keys = sorted({*(cm.get("data") or {}), *(cm.get("binaryData") or {})})
            state.missing.append(
                f"ConfigMap {ref.name!r} has no key {ref.key!r} ({path}.configMap.key); its "
                f"keys: {', '.join(keys) or '(none)'}"
            )
            return
        state.parts[f"{path}.configMap"] = hashlib.sha256(value.encode()).hexdigest()
    elif source.pvc is not None:
        claim = source.pvc.claim_name
        if kube.get("PersistentVolumeClaim", ns, claim) is None:
            state.missing.append(
                f"PersistentVolumeClaim {claim!r} ({path}.pvc.claimName) does not exist in "
                f"namespace {ns}: create it or fix the name"
            )


def _config_map_value(cm: dict[str, Any], key: str) -> str | None:
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    if key in data:
        return str(data[key])
    if key in binary:
        return "base64:" + str(binary[key])
    return None
