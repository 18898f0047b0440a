"""The operator SIGKILLed at many points of a lifecycle: no duplicates, the right status."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from kubesft.api import SFT_DATASET, SFT_JOB
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, quickstart, wait_for

JOBS = ("quickstart", "second")


def _with_second_job(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first = next(d for d in docs if d["kind"] == "SFTJob")
    second = copy.deepcopy(first)
    second["metadata"]["name"] = "second"
    second["spec"]["output"]["pvc"]["path"] = "second"
    return [*docs, second]


def _condition(cluster: Cluster, type_: str) -> Callable[[], bool]:
    def check() -> bool:
        for job in cluster.jobs("kubesft.io/job=quickstart"):
            if any(c.type == type_ and c.status == "True" for c in job.status.conditions or []):
                return True
        return False

    return check


def test_operator_killed_at_six_points_converges_without_duplicates(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(_with_second_job(quickstart()))
    points: list[tuple[str, Callable[[], Any]]] = [
        ("objects just created", lambda: time.sleep(0.3) or True),
        ("preparation Job exists", lambda: cluster.jobs("kubesft.io/dataset=quickstart")),
        ("dataset Ready", cluster.phase_is(SFT_DATASET.plural, "quickstart", "Ready")),
        ("trainer Job exists", lambda: cluster.jobs("kubesft.io/job=quickstart")),
        ("training running", lambda: cluster.status(SFT_JOB.plural, "quickstart").get("progress")),
        ("trainer Job complete", _condition(cluster, "Complete")),
    ]
    for what, reached in points:
        wait_for(what, reached)
        operator.kill()
        for name in JOBS:  # deterministic names: never a second Job, whatever was half done
            assert len(cluster.jobs(f"kubesft.io/job={name}")) <= 1, what
        assert len(cluster.jobs("kubesft.io/dataset=quickstart")) == 1 or what == points[0][0]
        operator.start()
        operator.wait_started()

    for name in JOBS:
        wait_for(f"{name} finished", cluster.phase_is(SFT_JOB.plural, name, "Succeeded", "Failed"))
        st = cluster.status(SFT_JOB.plural, name)
        assert st["phase"] == "Succeeded" and st["restarts"] == 0, st
        complete = next(c for c in st["conditions"] if c["type"] == "Complete")
        assert complete["status"] == "True", st
        assert [j.metadata.name for j in cluster.jobs(f"kubesft.io/job={name}")] == [
            f"{name}-train"
        ]
        owner = cluster.core.read_namespaced_config_map(f"{name}-train-config", cluster.ns)
        assert [o.kind for o in owner.metadata.owner_references] == ["Job"]
    (prep,) = [j.metadata.name for j in cluster.jobs("kubesft.io/dataset=quickstart")]
    assert prep.startswith("quickstart-prep-g1-")  # + a digest of the ConfigMap source
    assert operator.starts == 1 + len(points)
