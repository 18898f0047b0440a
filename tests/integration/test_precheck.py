"""Settings that cannot act with the job's dataset fail before any trainer Job exists.

The operator's reconciler (the code the operator process runs per event) against the real
apiserver; the dataset's preparation is stood in for by its status (see tests/e2e).
"""

from __future__ import annotations

from typing import Any

import pytest

from kubesft.api import SFT_DATASET, SFT_JOB
from kubesft.operator.kube import Kube
from kubesft.operator.reconciler import Reconciler
from tests.support.cluster_objects import CONFIG, create, make_dataset_ready, sft_job
from tests.support.invalid_manifests import valid_dataset

READS_EVAL = {
    "training": {"maxSteps": 10, "earlyStopping": {"patience": 2}},
    "checkpoints": {"keepBest": True},
}


def _dataset_with_eval_rows(kube: Kube, namespace: str, rows: int) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    stats = {"rows": 10 + rows, "valid": 10 + rows, "train": 10, "eval": rows}
    kube.patch_status(SFT_DATASET.plural, namespace, "valid-dataset", {"stats": stats})


def _status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get_custom(SFT_JOB.plural, namespace, name)
    assert obj is not None
    return dict(obj.get("status") or {})


def test_eval_settings_with_an_empty_eval_split_fail_as_invalid_spec(
    kube: Kube, namespace: str
) -> None:
    _dataset_with_eval_rows(kube, namespace, 0)
    create(kube, namespace, sft_job(namespace, "no-eval", **READS_EVAL))
    Reconciler(kube, CONFIG).job(namespace, "no-eval")
    st = _status(kube, namespace, "no-eval")
    failed = {c["type"]: c for c in st["conditions"]}["Failed"]
    assert st["phase"] == "Failed" and failed["reason"] == "InvalidSpec", st
    for field in ("spec.training.earlyStopping", "spec.checkpoints.keepBest"):
        assert field in failed["message"], failed
    assert "status.stats.eval is 0" in failed["message"]
    assert kube.get("Job", namespace, "no-eval-train") is None
    assert kube.get("ConfigMap", namespace, "no-eval-train-config") is None
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=no-eval"
    ).items
    warnings = [e for e in events if e.type == "Warning" and e.reason == "InvalidSpec"]
    assert warnings and "spec.training.earlyStopping" in warnings[0].message


@pytest.mark.parametrize(
    ("eval_rows", "spec"),
    [(3, READS_EVAL), (0, {"training": {"maxSteps": 10}})],
    ids=["eval-split-present", "defaults-only"],
)
def test_settings_that_can_act_get_a_trainer_job(
    kube: Kube, namespace: str, eval_rows: int, spec: dict[str, Any]
) -> None:
    _dataset_with_eval_rows(kube, namespace, eval_rows)
    create(kube, namespace, sft_job(namespace, "runs", **spec))
    assert Reconciler(kube, CONFIG).job(namespace, "runs") == "Queued"
    assert kube.get("Job", namespace, "runs-train") is not None
