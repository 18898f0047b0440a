"""Turning pydantic validation errors into messages a user can act on.

A message names the field path as written in YAML, what is wrong and the value given:
`spec.method.lora.r: must be greater than 0 (got 0)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_REWRITES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (check the spelling)",
}


class InvalidSpec(ValueError):
    """A user's object does not satisfy the API; `problems` has one line per field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """`("spec", "tolerations", 0, "key")` → `spec.tolerations[0].key`."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def describe_error(err: ErrorDetails, prefix: str = "") -> str:
    """One line for one pydantic error."""
    path = field_path(err["loc"], prefix)
    kind = err["type"]
    if kind == "kubesft_rule":
        rule_path = err.get("ctx", {}).get("field_path", "")
        if not err["loc"] and not prefix:  # a rule on the whole object names its field
            return f"{rule_path.lstrip('.')}: {err['msg']}"
        return f"{path}{rule_path}: {err['msg']}"
    if kind in _REWRITES:
        return f"{path} {_REWRITES[kind]}"
    msg = err["msg"]
    if kind in ("value_error", "assertion_error"):
        msg = msg.split(", ", 1)[-1]
        return f"{path}: {msg}"
    msg = msg.replace("Input should be", "must be").replace("String should", "must")
    return f"{path}: {msg} (got {_short(err.get('input'))})"


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    return [describe_error(e, prefix) for e in exc.errors()]


def validate_model(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """Validate `data` against `model`; raise :class:`InvalidSpec` with field paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, prefix)) from None


def parse_object(obj: Mapping[str, Any]) -> Any:
    """Parse a whole SFTDataset or SFTJob object (a dict from YAML or the apiserver)."""
    from kubesft.api.resource import KINDS

    kind = obj.get("kind")
    for k in KINDS:
        if k.kind == kind:
            return validate_model(k.model, dict(obj))
    known = ", ".join(k.kind for k in KINDS)
    raise InvalidSpec([f"kind: must be one of {known} (got {_short(kind)})"])


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
