"""The key a preparation is filed under, and a missing source as a condition (pure)."""

from __future__ import annotations

from kubesft.operator.dataset_source import (
    REFRESH_ANNOTATION,
    SourceState,
    follows_source,
    preparation_key,
)
from kubesft.operator.derive_dataset import derive_dataset_status
from tests.unit.operator.fixtures import dataset

LOC = "pvc://kubesft-data/datasets/quickstart/g1"


def test_key_is_the_generation_plus_a_digest_of_what_decides_the_data() -> None:
    ds = dataset()
    assert preparation_key(ds, SourceState()) == "g1"  # nothing but the spec: the generation
    eight, ten = (
        SourceState({"spec.source.configMap": "a"}),
        SourceState({"spec.source.configMap": "b"}),
    )
    assert preparation_key(ds, eight).startswith("g1-")
    assert preparation_key(ds, eight) == preparation_key(ds, eight)
    assert preparation_key(ds, eight) != preparation_key(ds, ten)
    ds.metadata.annotations[REFRESH_ANNOTATION] = "monday"
    refreshed = preparation_key(ds, SourceState())
    assert refreshed.startswith("g1-") and refreshed != preparation_key(ds, eight)
    ds.metadata.annotations[REFRESH_ANNOTATION] = "tuesday"
    assert preparation_key(ds, SourceState()) != refreshed


def test_missing_source_fails_with_source_not_found_naming_it() -> None:
    missing = ["ConfigMap 'quickstart-dta' (spec.source.configMap.name) does not exist"]
    st = derive_dataset_status(dataset(), None, LOC, "t", revision="g1", missing=missing)
    ready = next(c for c in st.conditions if c.type == "Ready")
    assert (st.phase, ready.reason) == ("Failed", "SourceNotFound")
    assert "quickstart-dta" in ready.message and st.revision == "g1"


def test_resync_rereads_finished_datasets_only_when_their_source_may_change() -> None:
    cm = {
        "spec": {"source": {"configMap": {"name": "d", "key": "k"}}},
        "status": {"phase": "Ready"},
    }
    hub = {"spec": {"source": {"hf": {"repo": "a/b"}}}, "status": {"phase": "Ready"}}
    split = {"evalSource": {"configMap": {"name": "e", "key": "k"}}}
    eval_cm = {"spec": {"source": {"hf": {"repo": "a/b"}}, "split": split}}
    waiting = {**hub, "status": {"phase": "Failed",
               "conditions": [{"type": "Ready", "reason": "SourceNotFound"}]}}  # fmt: skip
    assert follows_source(cm) and follows_source(eval_cm) and follows_source(waiting)
    assert not follows_source(hub)
