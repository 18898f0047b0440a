"""Row formats: find where a dataset keeps its fields, and normalize each row.

Every schema quirk (alpaca, sharegpt, custom columns) is resolved here, once, so the rest
of the trainer reads exactly one of three shapes: `{"messages": [...], "tools"?}`,
`{"prompt", "completion"}` or `{"text"}` (`normalize.normalize_row` builds them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kubesft.api.dataset import ColumnMapping
from kubesft_trainer.exit_codes import UserError

Format = Literal["messages", "prompt-completion", "text"]
Shape = Literal["turns", "pair", "text"]
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
}


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
    history: str | None = None
    """Column of earlier [prompt, response] pairs (alpaca's `history`)."""
    text: str = "text"

    @property
    def format(self) -> Format:
        """The normalized format; a pair with a system prompt or history becomes a conversation."""
        if self.shape == "pair":
            return "messages" if self.system or self.history else "prompt-completion"
        return "messages" if self.shape == "turns" else "text"


SOURCE_ROW = "row"
"""Key of a prepared row holding its 1-based row number in the dataset's source."""

# The spec's `format` names a shape by the format it normally normalizes to.
SHAPE_FORMAT: dict[str, str] = {"turns": "messages", "pair": "prompt-completion", "text": "text"}

# In detection order: a row that fits several shapes takes the first.
KNOWN_SCHEMAS = (
    Schema("messages", "turns"),
    Schema(
        "sharegpt",
        "turns",
        messages="conversations",
        role="from",
        content="value",
        system="system",
    ),
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
        return _with_alpaca_context(
            detect_schema(samples, None if fmt == "auto" else fmt, known), samples
        )
    implied = SHAPE_FORMAT[mapped.shape]
    if fmt not in ("auto", implied):
        raise UserError(
            f"spec.format is {fmt} but spec.columns maps {implied} data; "
            "set spec.format to auto or change spec.columns"
        )
    return mapped


def _with_alpaca_context(schema: Schema, samples: Sequence[Any]) -> Schema:
    """Alpaca rows that carry a `system` or `history` become conversations (LLaMA-Factory's
    alpaca), so the system prompt and earlier turns are trained on, not dropped."""
    if schema.name != "alpaca":
        return schema
    rows = [s for s in samples if isinstance(s, dict)]
    return replace(
        schema,
        system="system" if any(r.get("system") for r in rows) else None,
        history="history" if any(r.get("history") for r in rows) else None,
    )


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


def kind(value: Any) -> str:
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
    if "text" in example:
        return len(example["text"]), ()
    turns = example.get("messages")
    if turns is None and isinstance(example["prompt"], list):
        turns = [*example["prompt"], *example["completion"]]
    if turns is not None:
        chars = sum(
            len(t["content"])
            + len(t.get("reasoning_content", ""))
            + sum(len(json.dumps(c["function"])) for c in t.get("tool_calls", []))
            for t in turns
        )
        return chars, tuple(t["role"] for t in turns)
    return len(example["prompt"]) + len(example["completion"]), ()
