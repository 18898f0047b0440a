"""Edits of a running SFTJob through the real loop: a shortened deadline stops the trainer,
a change to what is trained is refused."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from kubesft.api import GROUP, SFT_JOB, VERSION
from tests.support import trainer_faults
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, quickstart, wait_for


def _patch(cluster: Cluster, spec: dict[str, object]) -> None:
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, SFT_JOB.plural, "quickstart", {"spec": spec}
    )


def test_deadline_edited_on_a_running_job_stops_it(
    cluster: Cluster, operator: OperatorProcess, node_runner: NodeRunner
) -> None:
    # Parked after step 2, the trainer cannot finish before the edited deadline applies.
    with trainer_faults.in_trainer_pods(node_runner, trainer_faults.SLEEP, "2"):
        cluster.apply(quickstart(activeDeadlineSeconds=3600))
        wait_for("trainer running", cluster.phase_is(SFT_JOB.plural, "quickstart", "Running"))
        with pytest.raises(ApiException) as refused:  # what is trained stays as started
            _patch(cluster, {"training": {"learningRate": 0.01}})
        assert refused.value.status == 422 and "spec.training" in refused.value.body
        _patch(cluster, {"activeDeadlineSeconds": 2})
        wait_for(
            "job finished",
            cluster.phase_is(SFT_JOB.plural, "quickstart", "Failed", "Succeeded"),
        )
    st = cluster.status(SFT_JOB.plural, "quickstart")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded", json.dumps(st, indent=1)
    assert "spec.activeDeadlineSeconds" in failed["message"]
    (job,) = cluster.jobs("kubesft.io/job=quickstart")
    assert job.spec.active_deadline_seconds == 2
