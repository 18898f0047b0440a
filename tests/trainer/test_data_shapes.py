"""The data shapes people bring, each quoted from issue 9, kept through `prepare` and masking.

Each row goes through the real preparation (normalize, validate, write) and then through
tokenization with the built-in ChatML template, so a test sees what training grades.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.dataset import SFTDatasetSpec
from kubesft_trainer.chat_template import load_builtin_template
from kubesft_trainer.masking import IGNORE_INDEX, tokenize_examples
from kubesft_trainer.prepare import DatasetInvalid, prepare_dataset

CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "City A"}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
OPENAI_TOOLS = {
    "tools": [WEATHER_TOOL],
    "messages": [
        {"role": "user", "content": "Weather in City A?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
    ],
}


def prepare(tmp_path: Path, rows: list[Any], **spec: Any) -> tuple[list[dict[str, Any]], Any]:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"source": {"configMap": {"name": "data"}}, "split": {"evalFraction": 0}, **spec}
    result = prepare_dataset(
        SFTDatasetSpec.model_validate(fields), tmp_path / "out", source_path=source
    )
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], result.stats


def graded(example: dict[str, Any], tokenizer: Any, loss_on: str = "assistant") -> list[list[str]]:
    """Decoded runs of graded tokens, per training example the row becomes."""
    out = []
    for tokenized in tokenize_examples(
        [example],
        tokenizer,
        loss_on=loss_on,  # type: ignore[arg-type]
        max_seq_length=4096,
        chat_template=load_builtin_template("chatml"),
    )[0]:
        runs: list[list[int]] = []
        previous = False
        for token, label in zip(tokenized.input_ids, tokenized.labels, strict=True):
            if label != IGNORE_INDEX:
                if not previous:
                    runs.append([])
                runs[-1].append(token)
            previous = label != IGNORE_INDEX
        out.append([tokenizer.decode(run, skip_special_tokens=False) for run in runs])
    return out


def test_openai_tool_calls_are_kept_and_graded(tmp_path: Path, tiny_tokenizer) -> None:
    null_content = json.loads(json.dumps(OPENAI_TOOLS))
    null_content["messages"][1]["content"] = None
    (with_text, without_text), stats = prepare(tmp_path, [OPENAI_TOOLS, null_content])
    assert with_text["tools"] == [WEATHER_TOOL]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "City A"}},
    }
    assert with_text["messages"][1] == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [call],
    }
    assert with_text["messages"][2] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": '{"temp_c": 21}',
    }
    assert without_text["messages"][1]["content"] == ""
    assert stats.roles == {"assistant": 4, "tool": 2, "user": 2}
    assert graded(with_text, tiny_tokenizer) == [
        [
            "Let me check.\n<tool_call>\n"
            '{"name": "get_weather", "arguments": {"city": "City A"}}\n</tool_call><|im_end|>',
            "It is 21 degrees.<|im_end|>",
        ]
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda row: row["messages"][1]["tool_calls"][0]["function"].update(arguments="{city"),
            "row 4 messages[1].tool_calls[0].function.arguments: not valid JSON",
        ),
        (
            lambda row: row["messages"][2].update(tool_call_id="c9"),
            "row 4 messages[2]: a tool turn must answer an earlier tool call (tool_call_id 'c9')",
        ),
    ],
)
def test_openai_rows_are_validated_by_field(tmp_path: Path, change, error: str) -> None:
    bad = json.loads(json.dumps(OPENAI_TOOLS))
    change(bad)
    with pytest.raises(DatasetInvalid) as failed:
        prepare(tmp_path, [OPENAI_TOOLS] * 3 + [bad])
    assert error in str(failed.value)


def test_weight_zero_turn_is_not_graded(tmp_path: Path, tiny_tokenizer) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bad answer.", "weight": 0},
            {"role": "user", "content": "Again?"},
            {"role": "assistant", "content": "Good answer.", "weight": 1},
        ]
    }
    (example,), _ = prepare(tmp_path, [row])
    assert example["messages"][1]["weight"] == 0 and "weight" not in example["messages"][3]
    assert graded(example, tiny_tokenizer) == [["Good answer.<|im_end|>"]]


def test_sharegpt_function_call_observation_and_system(tmp_path: Path, tiny_tokenizer) -> None:
    row = {
        "system": "You are a weather bot.",
        "tools": json.dumps([WEATHER_TOOL]),
        "conversations": [
            {"from": "human", "value": "Weather in City A?"},
            {
                "from": "function_call",
                "value": '{"name": "get_weather", "arguments": {"city": "City A"}}',
            },
            {"from": "observation", "value": '{"temp_c": 21}'},
            {"from": "gpt", "value": "21 degrees."},
        ],
    }
    (example,), stats = prepare(tmp_path, [row])
    assert [m["role"] for m in example["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert example["messages"][0]["content"] == "You are a weather bot."
    assert example["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": {"city": "City A"},
    }
    assert example["tools"] == [WEATHER_TOOL]
    assert stats.ignored_columns == {}
    runs = graded(example, tiny_tokenizer)[0]
    assert (
        runs[0].startswith('<tool_call>\n{"name": "get_weather"')
        and runs[1] == "21 degrees.<|im_end|>"
    )


def test_content_parts_are_joined_and_images_refused(tmp_path: Path) -> None:
    parts = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
            {"role": "assistant", "content": "4"},
        ]
    }
    (example,), _ = prepare(tmp_path, [parts])
    assert example["messages"][0]["content"] == "What is 2+2?"
    image = json.loads(json.dumps(parts))
    image["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "x"}})
    with pytest.raises(
        DatasetInvalid,
        match=r"row 1 messages\[0\]\.content\[1\]\.type: 'image_url' parts are not "
        "supported: kubesft trains text-only models",
    ):
        prepare(tmp_path, [image])


@pytest.mark.parametrize("key", ["reasoning_content", "thinking"])
def test_reasoning_is_kept_and_graded(tmp_path: Path, tiny_tokenizer, key: str) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", key: "91 = 7 * 13.", "content": "No."},
        ]
    }
    (example,), _ = prepare(tmp_path, [row])
    assert example["messages"][1]["reasoning_content"] == "91 = 7 * 13."
    assert graded(example, tiny_tokenizer) == [["<think>\n91 = 7 * 13.\n</think>\n\nNo.<|im_end|>"]]


def test_conversational_prompt_completion_grades_the_completion(
    tmp_path: Path, tiny_tokenizer
) -> None:
    row = {
        "prompt": [{"role": "user", "content": "Pick a fruit."}],
        "completion": [{"role": "assistant", "content": "Pear."}],
    }
    (example,), stats = prepare(tmp_path, [row])
    assert stats.format == "prompt-completion"
    assert {k: example[k] for k in ("prompt", "completion")} == row
    assert graded(example, tiny_tokenizer) == [["Pear.<|im_end|>"]]


def test_alpaca_system_and_history_become_turns(tmp_path: Path, tiny_tokenizer) -> None:
    row = {
        "instruction": "And the plural?",
        "input": "",
        "output": "chats",
        "system": "You are a terse translator.",
        "history": [["Translate 'cat' to French.", "chat"]],
    }
    (example,), stats = prepare(tmp_path, [row])
    assert stats.format == "messages"
    assert example["messages"] == [
        {"role": "system", "content": "You are a terse translator."},
        {"role": "user", "content": "Translate 'cat' to French."},
        {"role": "assistant", "content": "chat"},
        {"role": "user", "content": "And the plural?"},
        {"role": "assistant", "content": "chats"},
    ]
    assert graded(example, tiny_tokenizer) == [["chat<|im_end|>", "chats<|im_end|>"]]


def test_unused_columns_are_listed_in_stats(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Hi", "lang": "en"},
                {"role": "assistant", "content": "Hey"},
            ],
            "source": "web",
            "id": i,
        }
        for i in range(3)
    ]
    rows[0]["messages"][0]["name"] = "alice"  # a participant name only tool turns carry over
    _, stats = prepare(tmp_path, rows)
    assert stats.ignored_columns == {
        "id": 3,
        "messages[].lang": 3,
        "messages[].name": 1,
        "source": 3,
    }
