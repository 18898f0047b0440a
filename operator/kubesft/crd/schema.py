"""Pydantic JSON Schema → Kubernetes structural OpenAPI v3 schema.

Kubernetes wants every type spelled out in place: no ``$ref``, no ``anyOf`` with types,
``exclusiveMinimum`` as a boolean (OpenAPI 3.0), no ``title``. Defaults are not copied
into the CRD: they live in the models (applied by the operator) and are shown in each
field's description instead, so the object a user applied is the object stored.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

# Keywords copied as they are; anything else unknown is an error, so a new pydantic
# construct cannot slip into a CRD unnoticed.
_PASSTHROUGH = {
    "type",
    "description",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}
_DROPPED = {"title", "default", "$defs"}


class UnsupportedSchema(TypeError):
    """A model uses a construct that has no structural-schema equivalent."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of ``model`` (aliases as field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _convert(raw, defs, path=model.__name__)


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    default = node.get("default")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is False:
                continue  # the apiserver prunes (or, with strict validation, rejects) unknowns
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _convert(value, defs, f"{path}{{}}")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key in _PASSTHROUGH:
            out[key] = value
        else:
            raise UnsupportedSchema(f"{path}: schema keyword {key!r} has no CRD equivalent")
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & out.keys():
        out["x-kubernetes-preserve-unknown-fields"] = True
    if default not in (None, "", [], {}):
        text = out.get("description", "").rstrip()
        sep = " " if text else ""
        out["description"] = f"{text}{sep}Default: {json.dumps(default)}."
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref`` and collapse ``anyOf [X, null]`` (an optional field) into X."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise UnsupportedSchema(f"union of {len(options)} types is not structural: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        option = _resolve(options[0], defs)
        # The field's own description wins over the referenced model's docstring.
        return {**option, **rest}
    return node
