"""Kubernetes' own string formats, checked the same way by the models and the apiserver.

Each :class:`Format` pairs a Python check (run by `kubesft validate`, the operator and the
trainer) with the CEL the apiserver runs, and both report the same message on the field
that carries the value. Where Kubernetes ships a CEL function for a format (the `format`
library: `format.dns1123Subdomain()`, `format.qualifiedName()`, `format.labelValue()`;
the quantity library: `isQuantity()`, `quantity().sign()`; both in kube-apiserver since
1.31/1.29, pinned here at 1.35) the CRD uses it. The Python side mirrors the published
grammars of k8s.io/apimachinery (`pkg/util/validation`, `pkg/api/resource/quantity.go`)
and distribution/reference (image references): there is no maintained Python package of
these rules, and the kubernetes client (which the models must not import, see DESIGN.md)
has none either, so they are written here once, each next to its source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

# k8s.io/apimachinery/pkg/util/validation/validation.go
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_RE = re.compile(rf"^{_QUALIFIED}$")
LABEL_VALUE_RE = re.compile(rf"^({_QUALIFIED})?$")
CONFIG_MAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")

# k8s.io/apimachinery/pkg/api/resource/quantity.go: <signedNumber><suffix>, where suffix
# is a binary SI (Ki..Ei), a decimal SI (n, u, m, k, M..E) or an integer decimal exponent
# (e3, E-2: the parser reads it with strconv.ParseInt).
_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
QUANTITY_RE = re.compile(rf"^([+-]?){_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$")

# github.com/distribution/reference/regexp.go: [domain/]path[:tag][@digest]
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"

# A relative path inside a volume: segments without '/', none empty, '.' or '..'.
_RELATIVE_SHAPE = r"^[^/]+(/[^/]+)*$"
_DOT_SEGMENT = r"(^|/)[.][.]?(/|$)"

MAX_IMAGE = 512
MAX_PATH = 1024


def cel_string(pattern: str) -> str:
    """A Python regex as a CEL string literal (RE2 reads these patterns the same way)."""
    return "'" + pattern.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Format:
    """A string format: `check` in Python, `cel` (over `self`) in the apiserver."""

    name: str
    check: Callable[[str], bool]
    cel: str
    message: str

    def validate(self, value: str) -> str:
        if not self.check(value):
            raise PydanticCustomError("kubesft_format", self.message)
        return value

    def rule(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message}


def _k8s_format(function: str, check: Callable[[str], bool], message: str) -> Format:
    return Format(function, check, f"!format.{function}().validate(self).hasValue()", message)


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None


def is_dns1035_label(value: str) -> bool:
    return len(value) <= 63 and DNS1035_LABEL_RE.fullmatch(value) is not None


def is_qualified_name(value: str) -> bool:
    """A label key: `[prefix/]name`, prefix a DNS-1123 subdomain, name <= 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash and not (prefix and is_dns1123_subdomain(prefix)):
        return False
    return len(name) <= 63 and QUALIFIED_NAME_RE.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and LABEL_VALUE_RE.fullmatch(value) is not None


def is_nonnegative_quantity(value: str) -> bool:
    """A resource.Quantity whose sign is not negative (`-0` is zero, as in Kubernetes)."""
    match = QUANTITY_RE.fullmatch(value)
    if match is None:
        return False
    try:
        return match.group(1) != "-" or Decimal(match.group(2)) == 0
    except InvalidOperation:
        return False


def is_image_reference(value: str) -> bool:
    return len(value) <= MAX_IMAGE and re.fullmatch(IMAGE_RE, value) is not None


def is_relative_path(value: str) -> bool:
    """'' (the volume root) or `a/b/c` without empty, '.' or '..' segments."""
    if value == "":
        return True
    return (
        re.fullmatch(_RELATIVE_SHAPE, value) is not None and re.search(_DOT_SEGMENT, value) is None
    )


def is_config_map_key(value: str) -> bool:
    return (
        len(value) <= 253
        and value not in (".", "..")
        and CONFIG_MAP_KEY_RE.fullmatch(value) is not None
    )


DNS1123_SUBDOMAIN = _k8s_format(
    "dns1123Subdomain",
    is_dns1123_subdomain,
    "must be a Kubernetes object name (RFC 1123 subdomain): lower-case letters, digits, "
    "'-' and '.', starting and ending with a letter or digit, at most 253 characters",
)
QUALIFIED_NAME = _k8s_format(
    "qualifiedName",
    is_qualified_name,
    "must be a label key ([prefix/]name): name of letters, digits, '-', '_' or '.', at most "
    "63 characters, starting and ending with a letter or digit; prefix a DNS subdomain",
)
LABEL_VALUE = _k8s_format(
    "labelValue",
    is_label_value,
    "must be a label value: empty, or letters, digits, '-', '_' or '.', at most 63 "
    "characters, starting and ending with a letter or digit",
)
QUANTITY = Format(
    "quantity",
    is_nonnegative_quantity,
    "isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
    "must be a non-negative Kubernetes quantity, e.g. 8, 500m, 64Gi",
)
IMAGE = Format(
    "image",
    is_image_reference,
    f"self.matches({cel_string(IMAGE_RE)})",
    "must be an image reference [registry/]repository[:tag][@digest] with a lower-case "
    "repository, e.g. ghcr.io/org/trainer:1.0",
)
RELATIVE_PATH = Format(
    "relativePath",
    is_relative_path,
    f"self == '' || (self.matches({cel_string(_RELATIVE_SHAPE)}) && "
    f"!self.matches({cel_string(_DOT_SEGMENT)}))",
    "must be a relative path inside the volume: no leading or trailing '/', no empty, "
    "'.' or '..' segments (e.g. runs/llama-1b)",
)
CONFIG_MAP_KEY = Format(
    "configMapKey",
    is_config_map_key,
    f"self != '.' && self != '..' && self.matches({cel_string(CONFIG_MAP_KEY_RE.pattern)})",
    "must be a ConfigMap key: letters, digits, '-', '_' or '.', not '.' or '..'",
)


def _field(fmt: Format, max_length: int, min_length: int = 0) -> Any:
    """Length bounds (CEL cost needs them) and the format's CEL rule on the field."""
    extra: Any = {"x-kubernetes-validations": [fmt.rule()]}
    if min_length:
        return Field(min_length=min_length, max_length=max_length, json_schema_extra=extra)
    return Field(max_length=max_length, json_schema_extra=extra)


ObjectName = Annotated[
    str, _field(DNS1123_SUBDOMAIN, 253, 1), AfterValidator(DNS1123_SUBDOMAIN.validate)
]
"""The name of another object in the same namespace (Secret, ConfigMap, PVC, SFTDataset…)."""
Quantity = Annotated[str, _field(QUANTITY, 64), AfterValidator(QUANTITY.validate)]
ImageReference = Annotated[str, _field(IMAGE, MAX_IMAGE), AfterValidator(IMAGE.validate)]
RelativePath = Annotated[
    str, _field(RELATIVE_PATH, MAX_PATH), AfterValidator(RELATIVE_PATH.validate)
]
ConfigMapKey = Annotated[
    str, _field(CONFIG_MAP_KEY, 253, 1), AfterValidator(CONFIG_MAP_KEY.validate)
]
LabelKey = Annotated[str, _field(QUALIFIED_NAME, 317, 1), AfterValidator(QUALIFIED_NAME.validate)]
LabelValue = Annotated[str, _field(LABEL_VALUE, 63), AfterValidator(LABEL_VALUE.validate)]


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not is_qualified_name(key):
            raise PydanticCustomError(
                "kubesft_format", "key '{key}' " + QUALIFIED_NAME.message, {"key": key}
            )
        if not is_label_value(value):
            raise PydanticCustomError(
                "kubesft_format",
                "value '{value}' of '{key}' " + LABEL_VALUE.message,
                {"key": key, "value": value},
            )
    return labels


def _label_map(max_items: int) -> Any:
    """Keys checked by a rule on the map, values by one on each value (CEL cost stays low)."""
    keys = {
        "rule": f"self.all(k, {QUALIFIED_NAME.cel.replace('self', 'k')})",
        "message": "every key " + QUALIFIED_NAME.message,
    }
    values = {"type": "string", "maxLength": 63, "x-kubernetes-validations": [LABEL_VALUE.rule()]}
    extra: Any = {"x-kubernetes-validations": [keys], "additionalProperties": values}
    return Field(max_length=max_items, json_schema_extra=extra)


NodeSelector = Annotated[dict[str, str], _label_map(64), AfterValidator(_check_labels)]
"""Label keys to label values, checked as the apiserver checks metadata.labels."""
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
