"""Format detection, normalization and row validation (kubesft_trainer.formats)."""

from __future__ import annotations

from typing import Any

import pytest

from kubesft.api.dataset import ColumnMapping
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.formats import RowProblem, choose_schema, detect_schema, measure
from kubesft_trainer.normalize import normalize_row

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}
PAIR = {"prompt": "2+2?", "completion": "4"}
ALPACA = {"instruction": "Add.", "input": "2 and 3", "output": "5"}
SHAREGPT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}]}


def normalize(rows: list[Any], fmt: str = "auto", columns: dict | None = None) -> list[dict]:
    mapping = ColumnMapping.model_validate(columns) if columns is not None else None
    schema = choose_schema(fmt, mapping, rows)
    return [normalize_row(row, schema) for row in rows]


def problem(row: Any, fmt: str = "auto", columns: dict | None = None) -> tuple[str, str]:
    mapping = ColumnMapping.model_validate(columns) if columns is not None else None
    schema = choose_schema(fmt, mapping, [CHAT] if fmt in ("auto", "messages") else [])
    with pytest.raises(RowProblem) as caught:
        normalize_row(row, schema)
    return caught.value.field, caught.value.message


@pytest.mark.parametrize(
    ("row", "name", "fmt"),
    [
        (CHAT, "messages", "messages"),
        (PAIR, "prompt-completion", "prompt-completion"),
        ({"text": "Hello world."}, "text", "text"),
        (ALPACA, "alpaca", "prompt-completion"),
        (SHAREGPT, "sharegpt", "messages"),
        ({"conversations": CHAT["messages"]}, "conversations", "messages"),
    ],
)
def test_detects_each_known_shape(row: dict, name: str, fmt: str) -> None:
    schema = detect_schema([row])
    assert (schema.name, schema.format) == (name, fmt)


def test_detection_follows_the_majority_of_sample_rows() -> None:
    rows = [{"text": "odd first row"}, PAIR, PAIR, {"prompt": "p", "completion": "c"}]
    assert detect_schema(rows).name == "prompt-completion"


def test_explicit_format_restricts_detection() -> None:
    row = {**CHAT, "text": "rendered already"}
    assert normalize([row], fmt="text") == [{"text": "rendered already"}]
    assert normalize([row]) == [{"messages": CHAT["messages"]}]


def test_undetectable_rows_name_their_keys() -> None:
    with pytest.raises(UserError, match=r"keys: answer, question.*spec\.columns"):
        choose_schema("auto", None, [{"question": "q", "answer": "a"}])


def test_messages_pass_through_unchanged() -> None:
    assert normalize([CHAT]) == [CHAT]


def test_alpaca_becomes_prompt_completion_with_blank_line_before_input() -> None:
    rows = [ALPACA, {"instruction": "Greet.", "input": "", "output": "Hi"}]
    assert normalize(rows) == [
        {"prompt": "Add.\n\n2 and 3", "completion": "5"},
        {"prompt": "Greet.", "completion": "Hi"},
    ]


def test_sharegpt_speakers_become_chat_roles() -> None:
    turns = [("system", "Be terse."), ("human", "Weather?"), ("gpt", "Asking."), ("tool", "")]
    row = {"conversations": [{"from": f, "value": v} for f, v in [*turns, ("gpt", "Sunny.")]]}
    roles = [t["role"] for t in normalize([row])[0]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]


def test_roles_are_case_insensitive_and_consecutive_assistant_turns_are_fine() -> None:
    row = {
        "messages": [
            {"role": "User", "content": "Hi"},
            {"role": "ASSISTANT", "content": "Hey"},
            {"role": "assistant", "content": "Anything else?"},
        ]
    }
    roles = [t["role"] for t in normalize([row])[0]["messages"]]
    assert roles == ["user", "assistant", "assistant"]


def test_custom_column_mapping_with_role_map() -> None:
    row = {
        "dialog": [
            {"speaker": "customer", "said": "Where is my parcel?"},
            {"speaker": "agent", "said": "On its way."},
        ],
        "persona": "You are a support agent.",
    }
    columns = {
        "messages": "dialog",
        "role": "speaker",
        "content": "said",
        "roleMap": {"customer": "user", "agent": "assistant"},
        "system": "persona",
    }
    assert normalize([row], columns=columns) == [
        {
            "messages": [
                {"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": "Where is my parcel?"},
                {"role": "assistant", "content": "On its way."},
            ]
        }
    ]


def test_custom_prompt_columns_join_and_system_column_makes_a_conversation() -> None:
    row = {"q": "Translate:", "ctx": "chat", "a": "gato", "sys": "Be brief."}
    columns = {"prompt": ["q", "ctx"], "completion": "a"}
    assert normalize([row], columns=columns) == [
        {"prompt": "Translate:\n\nchat", "completion": "gato"}
    ]
    assert normalize([row], columns={**columns, "system": "sys"})[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate:\n\nchat"},
        {"role": "assistant", "content": "gato"},
    ]


def test_column_mapping_that_contradicts_the_format_is_rejected() -> None:
    with pytest.raises(UserError, match=r"spec\.format is text but spec\.columns maps prompt"):
        normalize([PAIR], fmt="text", columns={"completion": "completion"})


def test_turn_keys_alone_adjust_the_detected_conversation_column() -> None:
    row = {"conversations": [{"who": "human", "said": "Hi"}, {"who": "gpt", "said": "Hey"}]}
    columns = {"role": "who", "content": "said"}
    schema = choose_schema("messages", ColumnMapping.model_validate(columns), [row])
    assert normalize_row(row, schema) == CHAT


def turns(*pairs: tuple[Any, Any]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (turns(("user", "Hi"), ("bot", "Hey")), "messages[1].role", "unknown role 'bot'"),
        (turns(("user", "Hi"), (7, "Hey")), "messages[1].role", "must be a string (got number)"),
        (
            turns(("user", "Hi"), ("system", "Late"), ("assistant", "Hey")),
            "messages[1].role",
            "system turn is only allowed first",
        ),
        (turns(("system", "S"), ("user", "Hi")), "messages", "has no assistant turn"),
        (
            turns(("user", "Hi"), ("assistant", "Hey"), ("user", "And?")),
            "messages[2].role",
            "ends with a user turn",
        ),
        (turns(("user", "Hi"), ("assistant", "  ")), "messages[1].content", "must not be empty"),
        (turns(("user", 42), ("assistant", "Hey")), "messages[0].content", "got number"),
        (turns(("user", "Hi"), ("assistant", None)), "messages[1].content", "got null"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        ({"messages": [{"content": "Hi"}]}, "messages[0].role", "is required"),
        ({"messages": ["Hi"]}, "messages[0]", "must be an object with role and content"),
        ({"messages": "Hi"}, "messages", "must be a list of turns (got string)"),
        ({"messages": []}, "messages", "must not be empty"),
        ({"other": 1}, "messages", "is required"),
        (["not", "an", "object"], "", "must be a JSON object (got list)"),
    ],
)
def test_invalid_conversations_report_the_field_path(row: Any, field: str, message: str) -> None:
    got_field, got_message = problem(row)
    assert got_field == field
    assert message in got_message


@pytest.mark.parametrize(
    ("row", "fmt", "field", "message"),
    [
        ({"prompt": "p"}, "prompt-completion", "completion", "is required"),
        ({"prompt": "", "completion": "c"}, "prompt-completion", "prompt", "must not be empty"),
        ({"prompt": ["p"], "completion": "c"}, "prompt-completion", "prompt", "got list and"),
        ({"text": ""}, "text", "text", "must not be empty"),
    ],
)
def test_invalid_pairs_and_texts_report_the_field(
    row: dict, fmt: str, field: str, message: str
) -> None:
    got_field, got_message = problem(row, fmt=fmt)
    assert (got_field, message in got_message) == (field, True)


def test_sharegpt_errors_use_the_source_keys() -> None:
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "x"}]}
    schema = detect_schema([SHAREGPT])
    with pytest.raises(RowProblem) as caught:
        normalize_row(row, schema)
    assert caught.value.field == "conversations[1].from"


def test_tool_turns_may_be_empty() -> None:
    row = turns(("user", "Run it"), ("assistant", "Calling"), ("tool", ""), ("assistant", "Done"))
    assert normalize([row])[0] == row


def test_measure_counts_characters_and_roles() -> None:
    assert measure(CHAT) == (5, ("user", "assistant"))
    assert measure(PAIR) == (5, ())
    assert measure({"text": "abc"}) == (3, ())
