"""`inspect`: show what training grades in each row, before spending GPU hours on it.

Rows are read and normalized as `prepare` does, then rendered and masked as `train` does;
the graded character spans shown are those of the tokens that get labels (a token that
straddles a span's edge is graded whole, so the preview shows exactly that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.formats import RowProblem, choose_schema
from kubesft_trainer.masking import (
    IGNORE_INDEX,
    LossOn,
    conversation_of,
    labels_from_spans,
)
from kubesft_trainer.normalize import normalize_row
from kubesft_trainer.offsets import encode_with_offsets
from kubesft_trainer.turns import GradedText, render_graded

DETECT_ROWS = 100
SPANS = "_spans"
"""Key of the graded spans in a result, for highlighting; not printed."""
Span = tuple[int, int]


def inspect_rows(
    path: Path, tokenizer: Any, template: str, loss_on: LossOn
) -> Iterator[dict[str, Any]]:
    """One `{"row": N, "text", "graded": [...]}` per training text of each row of a JSONL
    file (a row the template splits per turn gives several), or `{"row": N, "error"}`.

    `row` is the 1-based line; `graded` holds the graded substrings of `text`, in order.
    """
    lines = _read_lines(path)
    samples = [_parse(line) for _, line in lines[:DETECT_ROWS]]
    schema = choose_schema("auto", None, [s for s in samples if s is not None])
    for number, line in lines:
        try:
            row = json.loads(line)
            example = normalize_row(row, schema)
            for text in _graded_texts(example, tokenizer, template, loss_on):
                spans = _graded_spans(text, tokenizer)
                yield {
                    "row": number,
                    "text": text.text,
                    "graded": [text.text[s:e] for s, e in spans],
                    SPANS: spans,
                }
        except json.JSONDecodeError as err:
            yield {"row": number, "error": f"not valid JSON: {err}"}
        except RowProblem as problem:
            yield {"row": number, "error": str(problem)}
        except ValueError as err:
            yield {"row": number, "error": str(err)}


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read --data {path}: {err.strerror}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _graded_texts(
    example: Mapping[str, Any], tokenizer: Any, template: str, loss_on: LossOn
) -> list[GradedText]:
    """The texts training builds from a normalized example, with their graded spans."""
    conversation = conversation_of(example, loss_on)
    if conversation is not None:
        messages, turn_loss = conversation
        return render_graded(messages, template, tokenizer, turn_loss, example.get("tools"))
    eos = str(getattr(tokenizer, "eos_token", "") or "")
    if "text" in example:
        text = example["text"] + eos
        return [GradedText(text, [(0, len(text))])]
    prompt = str(example["prompt"])
    text = prompt + str(example["completion"]) + eos
    return [GradedText(text, [(0 if loss_on == "all" else len(prompt), len(text))])]


def _graded_spans(text: GradedText, tokenizer: Any) -> list[Span]:
    """Character spans of the tokens that get labels (neighbouring tokens merged)."""
    ((ids, offsets),) = encode_with_offsets(tokenizer, [text.text])
    labels = labels_from_spans(ids, offsets, text.spans)
    spans: list[Span] = []
    for (start, end), label in zip(offsets, labels, strict=True):
        if label == IGNORE_INDEX:
            continue
        if spans and spans[-1][1] >= start:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def print_rows(results: Iterator[dict[str, Any]], as_json: bool) -> int:
    """Print each result (JSON lines or highlighted text); returns the count of row errors."""
    errors = 0
    if as_json:
        for result in results:
            errors += "error" in result
            shown = {k: v for k, v in result.items() if k != SPANS}
            print(json.dumps(shown, ensure_ascii=False))
        return errors
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for result in results:
        console.rule(f"row {result['row']}")
        if "error" in result:
            errors += 1
            console.print(Text(result["error"], style="bold red"))
            continue
        text = Text()
        at = 0
        for start, end in result[SPANS]:
            text.append(result["text"][at:start], style="dim")
            text.append(result["text"][start:end], style="bold black on green")
            at = end
        text.append(result["text"][at:], style="dim")
        console.print(text)
    console.print(Text("graded text is highlighted; the rest is context", style="dim"))
    return errors
