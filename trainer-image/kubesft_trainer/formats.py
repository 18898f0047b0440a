"""Row formats: find where a dataset keeps its fields, and normalize each row.

Every schema quirk (alpaca, sharegpt, custom columns) is resolved here, once, so the rest
of the trainer reads exactly one of three shapes:
`{"messages": [{"role", "content"}, ...]}`, `{"prompt", "completion"}` or `{"text"}`.
Validation flags only rows that cannot be trained on, naming the field in the source's
own column names (`conversations[2].from`), so the user can find it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kubesft.api.dataset import ColumnMapping
from kubesft_trainer.exit_codes import UserError

Format = Literal["messages", "prompt-completion", "text"]
Shape = Literal["turns", "pair", "text"]
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "tool": "tool"}


@dataclass(frozen=True)
class Schema:
    """Where a row keeps its fields; `name` is the known schema it was detected as.

    `shape` is how the source stores an example: a list of turns, a prompt/completion
    pair, or plain text.
    """

    name: str
    shape: Shape
    messages: str = "messages"
    role: str = "role"
    content: str = "content"
    role_map: Mapping[str, str] = field(default_factory=lambda: dict(SHAREGPT_ROLES))
    prompt: tuple[str, ...] = ("prompt",)
    completion: str = "completion"
    system: str | None = None
    text: str = "text"

    @property
    def format(self) -> Format:
        """The normalized format; a pair with a system prompt becomes a conversation."""
        if self.shape == "pair":
            return "messages" if self.system else "prompt-completion"
        return "messages" if self.shape == "turns" else "text"


# The spec's `format` names a shape by the format it normally normalizes to.
SHAPE_FORMAT: dict[str, str] = {"turns": "messages", "pair": "prompt-completion", "text": "text"}

# In detection order: a row that fits several shapes takes the first.
KNOWN_SCHEMAS = (
    Schema("messages", "turns"),
    Schema("sharegpt", "turns", messages="conversations", role="from", content="value"),
    Schema("conversations", "turns", messages="conversations"),
    Schema("prompt-completion", "pair"),
    Schema("alpaca", "pair", prompt=("instruction", "input"), completion="output"),
    Schema("text", "text"),
)


class RowProblem(Exception):
    """Why one row cannot be used: a field path inside the row and a message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def choose_schema(fmt: str, columns: ColumnMapping | None, samples: Sequence[Any]) -> Schema:
    """The schema of a whole dataset: named by `columns`, or detected from `samples`.

    `samples` are the first parsed rows; `fmt` is the spec's format (`auto` to detect).
    """
    mapped = _mapped_schema(columns) if columns is not None else None
    if mapped is None:
        known: Sequence[Schema] = KNOWN_SCHEMAS
        if columns is not None:  # e.g. only turn keys renamed: detect with the new names
            known = tuple(_with_column_keys(s, columns) for s in KNOWN_SCHEMAS)
        return detect_schema(samples, None if fmt == "auto" else fmt, known)
    implied = SHAPE_FORMAT[mapped.shape]
    if fmt not in ("auto", implied):
        raise UserError(
            f"spec.format is {fmt} but spec.columns maps {implied} data; "
            "set spec.format to auto or change spec.columns"
        )
    return mapped


def detect_schema(
    samples: Sequence[Any], fmt: str | None = None, known: Sequence[Schema] = KNOWN_SCHEMAS
) -> Schema:
    """The schema in `known` most `samples` fit (earlier ones win ties), limited to `fmt`."""
    candidates = [s for s in known if fmt in (None, SHAPE_FORMAT[s.shape])]
    votes = dict.fromkeys((s.name for s in candidates), 0)
    for sample in samples:
        match = next((s for s in candidates if _fits(sample, s)), None)
        if match is not None:
            votes[match.name] += 1
    best = max(candidates, key=lambda s: votes[s.name])
    rows = [s for s in samples if isinstance(s, dict)]
    if votes[best.name] == 0 and fmt is None and rows:
        keys = sorted({k for row in rows[:20] for k in row})[:20]
        raise UserError(
            f"cannot detect the dataset format from the first rows (keys: {', '.join(keys)}); "
            "expected messages, prompt+completion, text, alpaca (instruction/output) or "
            "sharegpt (conversations); map your columns with spec.columns"
        )
    return best


def _fits(row: Any, schema: Schema) -> bool:
    if not isinstance(row, dict):
        return False
    if schema.shape == "turns":
        turns = row.get(schema.messages)
        first = turns[0] if isinstance(turns, list) and turns else None
        return isinstance(first, dict) and schema.role in first
    if schema.shape == "pair":
        return schema.prompt[0] in row and schema.completion in row
    return schema.text in row


def _mapped_schema(columns: ColumnMapping) -> Schema | None:
    """The schema `columns` name on their own, or None when they only adjust a known one."""
    if columns.messages:
        return _with_column_keys(Schema("columns", "turns", messages=columns.messages), columns)
    if columns.prompt or columns.completion:
        return Schema(
            "columns",
            "pair",
            prompt=tuple(columns.prompt) or ("prompt",),
            completion=columns.completion or "completion",
            system=columns.system,
        )
    if columns.text:
        return Schema("columns", "text", text=columns.text)
    return None


def _with_column_keys(schema: Schema, columns: ColumnMapping) -> Schema:
    """Apply the turn keys, role names and system column the user set explicitly."""
    return replace(
        schema,
        role=columns.role if columns.given("role") else schema.role,
        content=columns.content if columns.given("content") else schema.content,
        role_map={**schema.role_map, **columns.role_map},
        system=columns.system or schema.system,
    )


def normalize_row(row: Any, schema: Schema) -> dict[str, Any]:
    """The row in its normalized shape; raises RowProblem when it cannot be used."""
    if not isinstance(row, dict):
        raise RowProblem("", f"must be a JSON object (got {_kind(row)})")
    if schema.shape == "text":
        return {"text": _text(row, schema.text, schema.text)}
    if schema.shape == "turns":
        return {"messages": _conversation(row, schema)}
    prompt, completion = _prompt_completion(row, schema)
    if schema.format == "prompt-completion":
        return {"prompt": prompt, "completion": completion}
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return {"messages": _with_system(row, schema, turns)}


def _conversation(row: dict[str, Any], schema: Schema) -> list[dict[str, str]]:
    name = schema.messages
    turns = _require(row, name)
    if not isinstance(turns, list):
        raise RowProblem(name, f"must be a list of turns (got {_kind(turns)})")
    if not turns:
        raise RowProblem(name, "must not be empty")
    out = []
    for i, turn in enumerate(turns):
        path = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem(path, f"must be an object with {schema.role} and {schema.content}")
        role = _role(turn, schema, f"{path}.{schema.role}")
        if role == "system" and i > 0:
            raise RowProblem(f"{path}.{schema.role}", "a system turn is only allowed first")
        content = _text(turn, schema.content, f"{path}.{schema.content}", role == "tool")
        out.append({"role": role, "content": content})
    if not any(t["role"] == "assistant" for t in out):
        raise RowProblem(name, "has no assistant turn, so there is nothing to learn from")
    if out[-1]["role"] == "user":
        raise RowProblem(
            f"{name}[{len(out) - 1}].{schema.role}",
            "the conversation ends with a user turn; end it with the assistant's reply",
        )
    return _with_system(row, schema, out)


def _with_system(
    row: dict[str, Any], schema: Schema, turns: list[dict[str, str]]
) -> list[dict[str, str]]:
    """Prepend the system column's prompt, unless the conversation has its own."""
    if schema.system is None or row.get(schema.system) is None or turns[0]["role"] == "system":
        return turns
    system = _text(row, schema.system, schema.system, allow_empty=True)
    return [{"role": "system", "content": system}, *turns] if system.strip() else turns


def _prompt_completion(row: dict[str, Any], schema: Schema) -> tuple[str, str]:
    first = schema.prompt[0]
    parts = [_text(row, first, first)]
    for key in schema.prompt[1:]:
        # Later prompt columns are optional: alpaca's `input` is often empty or missing.
        if row.get(key) is not None and _text(row, key, key, allow_empty=True).strip():
            parts.append(row[key])
    return "\n\n".join(parts), _text(row, schema.completion, schema.completion)


def _role(turn: dict[str, Any], schema: Schema, path: str) -> str:
    raw = _require(turn, schema.role, path)
    if not isinstance(raw, str):
        raise RowProblem(path, f"must be a string (got {_kind(raw)})")
    role = schema.role_map.get(raw) or schema.role_map.get(raw.lower()) or raw.lower()
    if role not in ROLES:
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:37] + "...")
        raise RowProblem(
            path,
            f"unknown role {shown} (expected system, user, assistant or tool; "
            "map it with spec.columns.roleMap)",
        )
    return role


def _text(mapping: dict[str, Any], key: str, path: str, allow_empty: bool = False) -> str:
    value = _require(mapping, key, path)
    if not isinstance(value, str):
        raise RowProblem(path, f"must be a string (got {_kind(value)})")
    if not allow_empty and not value.strip():
        raise RowProblem(path, "must not be empty")
    return value


def _require(mapping: dict[str, Any], key: str, path: str | None = None) -> Any:
    if key not in mapping:
        raise RowProblem(path or key, "is required")
    return mapping[key]


def _kind(value: Any) -> str:
    """JSON's name for the value's type, as users see it in their files."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def measure(example: Mapping[str, Any]) -> tuple[int, tuple[str, ...]]:
    """Characters of text and the turns' roles of a normalized example (for stats)."""
    if "messages" in example:
        turns = example["messages"]
        return sum(len(t["content"]) for t in turns), tuple(t["role"] for t in turns)
    if "text" in example:
        return len(example["text"]), ()
    return len(example["prompt"]) + len(example["completion"]), ()
