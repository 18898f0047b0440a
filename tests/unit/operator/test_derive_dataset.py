"""SFTDataset status from its preparation Job (pure)."""

from __future__ import annotations

from kubesft.operator.derive_dataset import derive_dataset_status
from tests.unit.operator.fixtures import dataset, ended, observed

LOC = "pvc://kubesft-data/datasets/quickstart/g1"


def test_no_job_is_pending_and_running_job_is_validating() -> None:
    assert derive_dataset_status(dataset(), None, LOC, "t").phase == "Pending"
    assert derive_dataset_status(dataset(), observed(), LOC, "t").phase == "Validating"


def test_completed_job_makes_the_dataset_ready_with_stats() -> None:
    summary = {
        "phase": "Ready",
        "reason": "Prepared",
        "stats": {"rows": 10, "valid": 10, "train": 8, "eval": 2},
        "fingerprint": "f" * 64,
        "errors": [],
    }
    done = observed(
        conditions={"Complete": ("True", "", "")}, terminations=(ended(0, "Completed", summary),)
    )
    st = derive_dataset_status(dataset(), done, LOC, "t")
    assert st.phase == "Ready" and st.stats is not None and st.stats.train == 8
    assert st.fingerprint == "f" * 64 and st.location == LOC and st.observed_generation == 1


def test_invalid_rows_fail_the_dataset_naming_rows() -> None:
    summary = {
        "phase": "Failed",
        "reason": "DatasetInvalid",
        "message": "dataset invalid: 2 invalid rows (allowed 0)",
        "errors": [
            {"row": 2, "field": "messages[1].role", "message": "unknown role 'bot'"},
            {"row": 5, "field": "messages", "message": "has no assistant turn"},
        ],
    }
    failed = observed(
        conditions={"Failed": ("True", "PodFailurePolicy", "")},
        terminations=(ended(2, "Error", summary),),
    )
    st = derive_dataset_status(dataset(), failed, LOC, "t")
    assert st.phase == "Failed" and [e.row for e in st.errors] == [2, 5]
    ready = next(c for c in st.conditions if c.type == "Ready")
    assert (
        ready.reason == "DatasetInvalid" and "row 2" in ready.message and "row 5" in ready.message
    )


def test_finished_generation_is_kept_after_its_job_is_cleaned_up() -> None:
    ready = dataset({"phase": "Ready", "observedGeneration": 1})
    assert derive_dataset_status(ready, None, LOC, "t").phase == "Ready"
    changed = dataset({"phase": "Ready", "observedGeneration": 1}, generation=2)
    assert derive_dataset_status(changed, None, LOC, "t").phase == "Pending"


def test_prepares_own_reason_wins_and_an_unexplained_exit_is_named_by_the_exit_code() -> None:
    crashed = {"phase": "Failed", "reason": "PrepareError", "message": "OSError: disk full"}
    cases = [
        (ended(1, "Error", crashed), "PrepareError", "OSError: disk full"),
        (ended(2, "Error", "ValueError: x"), "DatasetInvalid", "ValueError: x"),
        (ended(137, "OOMKilled"), "PrepareFailed", "exit code 137 (OOMKilled)"),
    ]
    for termination, reason, message in cases:
        failed = observed(conditions={"Failed": ("True", "", "")}, terminations=(termination,))
        st = derive_dataset_status(dataset(), failed, LOC, "t")
        ready = next(c for c in st.conditions if c.type == "Ready")
        assert (st.phase, ready.reason, ready.message) == ("Failed", reason, message)
