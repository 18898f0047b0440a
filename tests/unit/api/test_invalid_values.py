"""Invalid values are rejected by the models with a message naming the field."""

from __future__ import annotations

import pytest

from kubesft.api import InvalidSpec, parse_object
from tests.support.invalid_manifests import CASES, InvalidCase, valid_dataset, valid_job


def test_valid_base_objects_parse() -> None:
    parse_object(valid_job())
    parse_object(valid_dataset())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_manifest_names_its_field(case: InvalidCase) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_object(case.manifest())
    named = [p for p in info.value.problems if p.split(":")[0].split(" ")[0] == case.field]
    assert named, f"no problem names {case.field}: {info.value.problems}"


def test_table_is_large_and_covers_both_kinds() -> None:
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 80 and kinds == {"SFTJob", "SFTDataset"}
    assert len({c.id for c in CASES}) == len(CASES)


def test_message_shows_field_bound_and_value() -> None:
    obj = valid_job()
    obj["spec"]["method"]["lora"]["r"] = 0
    with pytest.raises(InvalidSpec) as info:
        parse_object(obj)
    assert info.value.problems == ["spec.method.lora.r: must be greater than 0 (got 0)"]


def test_unknown_field_suggests_spelling() -> None:
    obj = valid_job()
    obj["spec"]["training"]["lerningRate"] = 1
    with pytest.raises(InvalidSpec) as info:
        parse_object(obj)
    assert "spec.training.lerningRate is not a known field" in str(info.value)


def test_cross_field_rule_names_the_rule_field() -> None:
    obj = valid_job()
    obj["spec"]["resources"] = {"nodes": 2, "gpus": 0}
    with pytest.raises(InvalidSpec) as info:
        parse_object(obj)
    assert info.value.problems == [
        "spec.resources.nodes: resources.nodes > 1 needs resources.gpus >= 1 per node"
    ]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match="kind: must be one of SFTDataset, SFTJob"):
        parse_object({"apiVersion": "kubesft.io/v1alpha1", "kind": "SFTRun", "spec": {}})
