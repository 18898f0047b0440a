"""A mixture through the full loop (operator, kube-controller-manager, node runner, the real
`prepare` and `train`): examples/mixture/ (chat + code + general-text replay, retention on
held-text), shortened; and a job whose member SFTDataset Failed, which waits naming it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from rich.console import Console

from kubesft.api import SFT_DATASET, SFT_JOB, SFTJob, parse_object
from kubesft.status_view import render_status
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import ROOT, Cluster, wait_for

MIXTURE = ROOT / "examples" / "mixture"
SHORT = {
    "training": {"maxSteps": 10},
    "evaluation": {"everySteps": 5, "samples": 1, "maxNewTokens": 4},
    "checkpoints": {"everySteps": 5, "keep": 1},
}
"""Ten steps with two evaluations: enough for every mixture and retention field."""


def mixture_docs() -> list[dict[str, Any]]:
    """examples/mixture/ (ConfigMap, four SFTDatasets, SFTJob), the job shortened."""
    paths = sorted(MIXTURE.glob("*.yaml"))
    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "SFTJob":
            for section, fields in copy.deepcopy(SHORT).items():
                doc["spec"][section].update(fields)
    return docs


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions", []) if c["type"] == type_)


def rendered(obj: dict[str, Any]) -> str:
    """What `kubesft status` shows for the object."""
    job = parse_object(obj)
    assert isinstance(job, SFTJob)
    console = Console(record=True, width=160)
    console.print(render_status(job))
    return console.export_text()


def test_mixture_with_replay_trains_and_reports_plan_per_dataset_eval_and_retention(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(mixture_docs())
    done = cluster.phase_is(SFT_JOB.plural, "mixture", "Succeeded", "Failed")
    wait_for("mixture job finished", done, timeout=600)
    st = cluster.status(SFT_JOB.plural, "mixture")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert condition(st, "DatasetReady")["message"] == (
        "SFTDatasets 'chat', 'code', 'general-text', 'held-text' are Ready"
    )

    plan = {e["name"]: e for e in st["mixture"]}
    assert list(plan) == ["chat", "code", "general-text"], st["mixture"]
    assert abs(sum(e["weight"] for e in plan.values()) - 1) < 1e-6
    assert abs(plan["general-text"]["weight"] - 0.05) < 1e-6, plan
    epoch = sum(e["examplesPerEpoch"] for e in plan.values())
    for entry in plan.values():
        assert entry["examples"] > 0 and entry["tokensPerEpoch"] > 0, entry
        # mixBy examples: each member's share of an epoch's examples is its weight
        assert abs(entry["examplesPerEpoch"] / epoch - entry["weight"]) < 0.02, plan
        assert abs(entry["repeats"] - entry["examplesPerEpoch"] / entry["examples"]) < 0.01

    # Members with an eval split are scored on their own (general-text has none).
    by_dataset = {e["name"]: e["evalLoss"] for e in st["metrics"]["evalByDataset"]}
    assert set(by_dataset) == {"chat", "code"}, st["metrics"]
    assert all(loss > 0 for loss in by_dataset.values()), by_dataset
    assert st["metrics"]["evalLoss"] > 0

    retention = st["retention"]
    assert retention["name"] == "held-text", retention
    assert retention["lossBefore"] > 0 and retention["loss"] > 0 and retention["step"] > 0
    change = (retention["loss"] - retention["lossBefore"]) / retention["lossBefore"]
    assert abs(retention["relativeChange"] - change) < 1e-6, retention
    forgetting = condition(st, "Forgetting")
    expected = "RetentionLossRising" if change > 0.2 else "RetentionLossWithinThreshold"
    assert forgetting["reason"] == expected, forgetting

    # Each dataset was mounted at its own path, read-only (what the trainer read).
    prepared = {
        name: cluster.status(SFT_DATASET.plural, name)["location"]
        for name in ("chat", "code", "general-text", "held-text")
    }
    assert len(set(prepared.values())) == 4, prepared

    text = rendered(cluster.get(SFT_JOB.plural, "mixture"))
    for shown in ("mixture (by examples)", "eval loss · chat", "eval loss · code",
                  "retention loss · held-text", "vs before training"):  # fmt: skip
        assert shown in text, text
    assert (cluster.pvc("kubesft-outputs") / "mixture" / "model").is_dir()


def test_a_failed_member_keeps_the_job_waiting_and_names_it(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    docs = mixture_docs()
    data = next(d for d in docs if d["kind"] == "ConfigMap")
    rows = data["data"]["code.jsonl"].splitlines()
    rows[1] = '{"messages": [{"role": "bot", "content": "7 plus 3"}]}'
    data["data"]["code.jsonl"] = "\n".join(rows) + "\n"
    datasets = [
        d for d in docs if d["kind"] == "SFTDataset" and d["metadata"]["name"] != "held-text"
    ]
    job = next(d for d in docs if d["kind"] == "SFTJob")
    del job["spec"]["evaluation"]["retention"]
    cluster.apply([data, *datasets, job])

    wait_for("code Failed", cluster.phase_is(SFT_DATASET.plural, "code", "Failed", "Ready"))
    assert cluster.status(SFT_DATASET.plural, "code")["phase"] == "Failed"
    wait_for("chat Ready", cluster.phase_is(SFT_DATASET.plural, "chat", "Ready", "Failed"))
    wait_for(
        "general-text Ready",
        cluster.phase_is(SFT_DATASET.plural, "general-text", "Ready", "Failed"),
    )

    def names_code() -> dict[str, Any] | None:
        st = cluster.status(SFT_JOB.plural, "mixture")
        ready = next((c for c in st.get("conditions", []) if c["type"] == "DatasetReady"), None)
        settled = ready is not None and ready["message"].startswith("SFTDataset 'code' is Failed")
        others = ready is not None and (
            "'chat'" in ready["message"] or "'general" in ready["message"]
        )
        return st if settled and not others else None

    try:
        st = wait_for("DatasetReady naming code alone", names_code)
    except AssertionError as err:
        raise AssertionError(f"{err}: {cluster.status(SFT_JOB.plural, 'mixture')}") from None
    assert st["phase"] == "WaitingForDataset", st
    ready = condition(st, "DatasetReady")
    assert ready["reason"] == "DatasetFailed" and "row 2" in ready["message"], ready
    assert cluster.jobs("kubesft.io/job=mixture") == []
    assert "SFTDataset 'code' is Failed" in rendered(cluster.get(SFT_JOB.plural, "mixture"))
