"""The held-out score: exact match and JSON format validity of greedy answers."""

from __future__ import annotations

from kubesft.api.held_out import HeldOutScore
from kubesft_trainer.held_out import exact_match_rate, format_valid_rate, held_out_score

REFS = ['{"name": "Ana", "age": 3}', '{"name": "Bo", "age": 40}']


def test_exact_match_ignores_layout_but_not_content() -> None:
    assert exact_match_rate(['{"name": "Ana",\n "age": 3} ', '{"name": "Bo"}'], REFS) == 0.5
    assert exact_match_rate(["Ana is 3."], ["Ana is 3"]) == 0.0


def test_format_valid_needs_an_object_with_the_reference_keys() -> None:
    answers = ['{"age": 9, "name": "X"}', '{"name": "Bo"}']
    assert format_valid_rate(answers, REFS) == 0.5
    assert format_valid_rate(["not json", '["name", "age"]'], REFS) == 0.0
    assert format_valid_rate(["a"], ["plain text reference"]) is None


def test_held_out_score_is_the_status_field() -> None:
    before = ["Sure! Ana is 3 years old.", "Bo, 40"]
    after = [REFS[0], '{"name": "Bo", "age": 41}']
    parsed = held_out_score(before, after, REFS)
    assert isinstance(parsed, HeldOutScore)
    assert (parsed.exact_match_before, parsed.exact_match_after) == (0.0, 0.5)
    assert (parsed.format_valid_before, parsed.format_valid_after) == (0.0, 1.0)
    assert held_out_score([], [], []) is None
    assert held_out_score(["a"], [], ["a"]) is None  # answers missing (resumed run)
