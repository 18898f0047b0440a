"""The data audit of `prepare`: each category found with its source rows, and drop/fail/warn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.dataset import SFTDatasetSpec, Validation
from kubesft_trainer.audit import audit_examples, split_example
from kubesft_trainer.prepare import DatasetInvalid, prepare_dataset


def qa(prompt: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    }


def clean(i: int) -> dict[str, Any]:
    """A distinct, unremarkable example (about 60 characters, a few words of answer)."""
    return qa(f"What is {i} plus {i}?", f"The sum of {i} and {i} is {2 * i}.")


def prepare(tmp_path: Path, rows: list[Any], **validation: Any) -> dict[str, Any]:
    """Prepare `rows` (row 1 first) with no eval split; returns stats.json."""
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = SFTDatasetSpec.model_validate(
        {
            "source": {"configMap": {"name": "data"}},
            "split": {"evalFraction": 0},
            "validation": validation,
        }
    )
    prepare_dataset(spec, tmp_path / "out", source_path=source)
    stats: dict[str, Any] = json.loads((tmp_path / "out" / "stats.json").read_text())
    return stats


def train_rows(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_clean_data_has_no_findings(tmp_path: Path) -> None:
    audit = prepare(tmp_path, [clean(i) for i in range(1, 21)])["audit"]
    for name in ("nearDuplicates", "contradictions", "shortAnswers", "lengthOutliers"):
        assert audit[name] == {"count": 0, "rows": [], "action": "warn"}
    assert audit["dropped"] == 0
    assert audit["minChars"] < 50 < audit["maxChars"]


def test_near_duplicates_name_the_later_rows_and_are_kept_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [clean(i) for i in range(1, 11)]
    rows.insert(4, qa("what IS 2   plus 2?", "The sum of 2 and 2 is 4.\n"))  # row 5 ~ row 2
    rows.append(qa("WHAT is 7 plus 7?", "the sum of 7 and 7 is 14."))  # row 12 ~ row 8
    rows.append(clean(3))  # row 13: exact duplicate of row 3, removed before the audit
    stats = prepare(tmp_path, rows)
    assert stats["duplicatesRemoved"] == 1
    assert stats["audit"]["nearDuplicates"] == {"count": 2, "rows": [5, 12], "action": "warn"}
    assert stats["train"] == 12
    warned = "2 near-duplicate examples (rows 5, 12; spec.validation.nearDuplicates is warn)"
    assert f"data audit: {warned}, kept" in caplog.text


def test_near_duplicates_dropped_keep_the_first_of_each(tmp_path: Path) -> None:
    rows = [clean(1), clean(2), qa("What is 1 plus 1? ", "THE SUM of 1 and 1 is 2."), clean(3)]
    stats = prepare(tmp_path, rows, nearDuplicates="drop")
    assert stats["audit"]["nearDuplicates"]["rows"] == [3]
    assert (stats["audit"]["dropped"], stats["train"]) == (1, 3)
    first = train_rows(tmp_path)[0]
    assert first["messages"][1]["content"] == "The sum of 1 and 1 is 2."


def test_contradictions_flag_every_answer_of_the_prompt(tmp_path: Path) -> None:
    rows = [
        qa("Capital of Australia?", "It is Canberra."),  # 1
        clean(1),  # 2
        qa("capital of  australia?", "It is Sydney."),  # 3: contradicts row 1
        qa("Is water wet?", "Yes, it is."),  # 4
        qa("Is water wet?", "yes,  it is."),  # 5: agrees with row 4 (a near-duplicate)
    ]
    stats = prepare(tmp_path, rows)
    assert stats["audit"]["contradictions"]["rows"] == [1, 3]
    assert stats["audit"]["nearDuplicates"]["rows"] == [5]
    stats = prepare(tmp_path, rows, contradictions="drop")
    assert stats["audit"]["dropped"] == 2
    assert "Capital" not in json.dumps(train_rows(tmp_path))


def test_a_multi_turn_prompt_is_the_conversation_before_the_final_answer(tmp_path: Path) -> None:
    def turns(first: str, last: str) -> dict[str, Any]:
        user, bot = "user", "assistant"
        contents = [(user, "Hi"), (bot, first), (user, "And then?"), (bot, last)]
        return {"messages": [{"role": r, "content": c} for r, c in contents]}

    rows = [turns("Hello there.", "Then we rest."), turns("Hello there.", "Then we run.")]
    rows.append(turns("Good day to you.", "Then we run."))  # a different prompt: no conflict
    stats = prepare(tmp_path, rows)
    assert stats["audit"]["contradictions"]["rows"] == [1, 2]


def test_short_answers_use_min_answer_words(tmp_path: Path) -> None:
    rows = [clean(1), qa("Sentiment of 'great'?", "positive"), clean(2), qa("Say hi", "Hi there")]
    stats = prepare(tmp_path, rows)
    assert stats["audit"]["shortAnswers"] == {"count": 1, "rows": [2], "action": "warn"}
    stats = prepare(tmp_path, rows, minAnswerWords=3, shortAnswers="drop")
    assert stats["audit"]["shortAnswers"]["rows"] == [2, 4]
    assert stats["train"] == 2


def test_text_examples_have_no_answer_to_audit(tmp_path: Path) -> None:
    rows = [{"text": f"Document number {i} is about topic {i}."} for i in range(12)]
    rows.append({"text": "DOCUMENT number 3 is   about topic 3."})
    audit = prepare(tmp_path, rows)["audit"]
    assert (audit["shortAnswers"]["count"], audit["contradictions"]["count"]) == (0, 0)
    assert audit["nearDuplicates"]["rows"] == [13]


def test_length_outliers_on_both_sides(tmp_path: Path) -> None:
    rows = [clean(i) for i in range(1, 30)]
    rows[9] = qa("Summarize the report.", "The report says: " + "lorem ipsum dolor " * 400)
    rows[19] = qa("?", "Ok then.")
    stats = prepare(tmp_path, rows)
    audit = stats["audit"]
    assert audit["lengthOutliers"] == {"count": 2, "rows": [10, 20], "action": "warn"}
    assert audit["minChars"] > len("?Ok then.") and audit["maxChars"] < 7000
    tight = prepare(tmp_path, rows, maxLengthScore=0.5)["audit"]
    assert audit["minChars"] < tight["minChars"] <= tight["maxChars"] < audit["maxChars"]


def test_lengths_are_not_judged_over_too_few_examples(tmp_path: Path) -> None:
    rows = [clean(1), clean(2), qa("Long?", "word " * 2000)]
    audit = prepare(tmp_path, rows)["audit"]
    assert audit["lengthOutliers"]["count"] == 0 and audit["maxChars"] is None


def test_fail_rejects_the_dataset_naming_rows_and_field(tmp_path: Path) -> None:
    rows = [clean(1), qa("What is 1 plus 1?", "the sum of 1 and 1 is 2."), qa("Hi", "Hello")]
    with pytest.raises(DatasetInvalid) as raised:
        prepare(tmp_path, rows, nearDuplicates="fail", shortAnswers="fail")
    message = str(raised.value)
    assert "1 near-duplicate examples (rows 2;" in message
    assert "spec.validation.nearDuplicates is fail" in message
    assert "spec.validation.shortAnswers is fail" in message and "(rows 3;" in message
    failure = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert failure["audit"]["nearDuplicates"]["rows"] == [2]
    assert raised.value.stats.audit is not None


def test_dropping_below_min_examples_fails_with_min_examples(tmp_path: Path) -> None:
    rows = [qa("Hi", "Hello"), qa("Yo", "Hey"), clean(1)]
    with pytest.raises(DatasetInvalid, match=r"spec\.validation\.minExamples"):
        prepare(tmp_path, rows, shortAnswers="drop", minExamples=2)


def test_split_example_keeps_tool_calls_and_tools_in_the_right_half() -> None:
    call = {"type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
    example = {
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
        ],
        "row": 7,
    }
    prompt, answer = split_example(example)
    assert "Weather in Oslo?" in prompt and "weather" in prompt and "7" not in prompt
    assert "Oslo" in answer and "Weather in Oslo?" not in answer
    pc = split_example({"prompt": "2+2?", "completion": "Four, of course."})
    assert pc == ("2+2?", "Four, of course.")


def test_audit_findings_cap_row_numbers_but_count_all() -> None:
    class Row:
        def __init__(self, row: int, example: dict[str, Any]) -> None:
            self.row, self.line = row, json.dumps(example)
            self.chars = len(self.line)

    examples = [Row(10 + i, qa(f"Q{i}", "no")) for i in range(8)]
    kept, audit = audit_examples(examples, Validation(short_answers="drop"))
    assert (audit.short_answers.count, audit.short_answers.rows) == (8, [10, 11, 12, 13, 14])
    assert (kept, audit.dropped) == ([], 8)
