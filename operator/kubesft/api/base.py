"""Shared building blocks of the kubesft API models.

Each cross-field rule is written once as a :class:`Rule`: the CEL expression that the
apiserver enforces (emitted into the CRD) sits next to the Python check that the operator,
the trainer and `kubesft validate` run, so both stay in step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kubesft.api.formats import (
    DNS1123_SUBDOMAIN,
    ConfigMapKey,
    Labels,
    ObjectName,
    RelativePath,
)

GROUP = "kubesft.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounds that keep CEL cost estimates finite; generous for real use.
MAX_NAME = 253
MAX_STRING = 4096
MAX_TEMPLATE = 65536
MAX_LIST = 64
# Child objects (Jobs, pods, Services) are named after the resource plus a suffix and a
# pod hash, and must stay within the 63-character DNS-label limit.
MAX_OBJECT_NAME = 52


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the apiserver, `check` for Python."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


class APIModel(BaseModel):
    """Base for spec models: camelCase in YAML, unknown fields rejected, rules checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=lambda schema, cls: _add_rules(schema, cls),
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> APIModel:
        for rule in type(self).rules:
            if not rule.check(self):
                # The field path travels in the context so messages name the same field
                # as the apiserver does (the rule's fieldPath).
                raise PydanticCustomError(
                    "kubesft_rule", rule.message, {"field_path": rule.field_path or ""}
                )
        return self

    def to_manifest(self) -> dict[str, Any]:
        """camelCase dict of what was set (defaults left out), so it validates again as is."""
        out: dict[str, Any] = self.model_dump(by_alias=True, mode="json", exclude_unset=True)
        return out

    def given(self, field: str) -> bool:
        """Whether the user set `field` (as opposed to it taking its default)."""
        return field in self.model_fields_set


class StatusModel(BaseModel):
    """Base for status models: written by kubesft, tolerant of fields it does not know."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )


def _add_rules(schema: dict[str, Any], cls: type) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_schema() for r in rules]


def cel_field(name: str, default: Any) -> str:
    """CEL for a field's value with its model default (CRDs carry no defaults)."""
    return f"(has(self.{name}) ? self.{name} : {json.dumps(default)})"


def exactly_one(*fields: str) -> Rule:
    """Rule: exactly one of `fields` (camelCase names) is set."""
    cel = "[" + ", ".join(f"has(self.{f})" for f in fields) + "].filter(x, x).size() == 1"
    names = ", ".join(fields)

    def check(model: Any) -> bool:
        by_alias = {f.alias or name: name for name, f in type(model).model_fields.items()}
        return sum(getattr(model, by_alias[f]) is not None for f in fields) == 1

    return Rule(cel=cel, message=f"exactly one of {names} must be set", check=check)


class SecretKeyRef(APIModel):
    """A key of a Secret in the same namespace; its value is only ever passed by reference."""

    name: ObjectName
    """Name of the Secret."""
    key: ConfigMapKey = "token"
    """Key inside the Secret (Secret keys follow the ConfigMap key rules)."""


class SecretRef(APIModel):
    """A whole Secret in the same namespace (e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)."""

    name: ObjectName
    """Name of the Secret."""


class PVCLocation(APIModel):
    """A path inside a PersistentVolumeClaim in the same namespace."""

    claim_name: ObjectName
    """Name of the PersistentVolumeClaim."""
    path: RelativePath = ""
    """Path inside the volume: relative, without '..' (empty means the volume root)."""


Phase = str
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-style condition: reason and message say what to change."""

    type: str
    status: ConditionStatus = "Unknown"
    reason: str = ""
    """CamelCase machine-readable cause."""
    message: str = ""
    """Human-readable explanation, naming the field to change when a user can fix it."""
    last_transition_time: str | None = None
    """RFC 3339 time the status last changed."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed from."""


class ObjectMeta(BaseModel):
    """The parts of metadata kubesft reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: Annotated[str, AfterValidator(DNS1123_SUBDOMAIN.validate)] | None = Field(
        default=None, max_length=MAX_OBJECT_NAME
    )
    """A DNS-1123 subdomain, as the apiserver requires of custom resources; child Jobs and
    pods derive their names from it, so it is kept short."""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
