"""An SFTDataset follows its ConfigMap source through the real loop (operator, preparation
Jobs run by the node runner, the data volume): fixing the ConfigMap of a Failed dataset
prepares it again, growing the ConfigMap of a Ready one prepares a new generation (and the
superseded one is removed), and a misspelt ConfigMap name is a SourceNotFound condition.
"""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import SFT_DATASET
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, wait_for

NAME = "chat"


def rows(count: int, *, invalid: int = 0) -> str:
    lines = [
        json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                 {"role": "assistant", "content": f"answer {i}"}]})
        for i in range(count)
    ]  # fmt: skip
    lines += ['{"messages": [{"role": "user", "content": "no answer"}]}'] * invalid
    return "\n".join(lines) + "\n"


def source(text: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chat-data"},
            "data": {"rows.jsonl": text}}  # fmt: skip


def dataset(config_map: str = "chat-data") -> dict[str, Any]:
    return {
        "apiVersion": "kubesft.io/v1alpha1",
        "kind": "SFTDataset",
        "metadata": {"name": NAME},
        "spec": {
            "source": {"configMap": {"name": config_map, "key": "rows.jsonl"}},
            "format": "messages",
            "split": {"evalFraction": 0.2, "seed": 1},
        },
    }


def settled(cluster: Cluster, *, revision_not: str | None = None) -> dict[str, Any]:
    """The dataset's status once Ready or Failed (for a revision other than ``revision_not``)."""

    def check() -> dict[str, Any] | None:
        st = cluster.status(SFT_DATASET.plural, NAME)
        done = st.get("phase") in ("Ready", "Failed") and st.get("revision") != revision_not
        return st if done else None

    return dict(wait_for(f"{NAME} Ready or Failed", check))


def edit_rows(cluster: Cluster, text: str) -> None:
    cluster.core.patch_namespaced_config_map(
        "chat-data", cluster.ns, {"data": {"rows.jsonl": text}}
    )


def prep_jobs(cluster: Cluster) -> list[str]:
    jobs = cluster.jobs(f"kubesft.io/dataset={NAME}")
    return sorted(j.metadata.name for j in jobs if not j.metadata.deletion_timestamp)


def test_fixing_the_config_map_of_a_failed_dataset_prepares_it(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply([source(rows(8, invalid=1)), dataset()])
    failed = settled(cluster)
    assert failed["phase"] == "Failed", failed

    edit_rows(cluster, rows(8))  # nothing else changes: no spec edit, no annotation

    ready = settled(cluster, revision_not=failed["revision"])
    assert ready["phase"] == "Ready", ready
    assert ready["stats"]["train"] + ready["stats"]["eval"] == 8
    assert ready["observedGeneration"] == 1


def test_growing_the_config_map_of_a_ready_dataset_prepares_a_new_generation(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply([source(rows(8)), dataset()])
    first = settled(cluster)
    assert first["phase"] == "Ready" and first["stats"]["train"] + first["stats"]["eval"] == 8
    data = cluster.pvc("kubesft-data")
    old_folder = data / first["location"].removeprefix("pvc://kubesft-data/")
    assert (old_folder / "train.jsonl").exists()

    edit_rows(cluster, rows(10))

    second = settled(cluster, revision_not=first["revision"])
    assert second["phase"] == "Ready", second
    assert second["stats"]["train"] + second["stats"]["eval"] == 10
    assert second["location"] != first["location"] and second["fingerprint"] != first["fingerprint"]
    new_folder = data / second["location"].removeprefix("pvc://kubesft-data/")
    assert (new_folder / "train.jsonl").exists()
    assert not old_folder.exists()  # superseded and used by no job: removed
    current = [f"{NAME}-prep-{second['revision']}"]
    wait_for("the superseded Job removed", lambda: prep_jobs(cluster) == current)


def test_misspelt_config_map_is_a_source_not_found_condition(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply([source(rows(8)), dataset(config_map="chat-dta")])
    st = settled(cluster)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (st["phase"], ready["reason"]) == ("Failed", "SourceNotFound"), st
    assert "ConfigMap 'chat-dta' (spec.source.configMap.name) does not exist" in ready["message"]
    assert prep_jobs(cluster) == []  # no pod waiting on a volume that cannot mount
