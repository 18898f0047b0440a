"""The full loop: operator → Jobs → kube-controller-manager → pods run by the node runner →
the real `prepare` and `train` → status on the resources.

The node runner stands in for the kubelet and container runtime only (see its docstring);
everything else is the real apiserver, controller manager, operator and trainer.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from kubesft.api import SFT_DATASET, SFT_JOB
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import Cluster, quickstart, wait_for


def test_quickstart_trains_to_success_with_status_and_files(
    cluster: Cluster, operator: OperatorProcess, kubectl: Any
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token"},
        "stringData": {"token": canary},
    }
    docs = quickstart()
    job_doc = next(d for d in docs if d["kind"] == "SFTJob")
    job_doc["spec"]["model"]["tokenSecretRef"] = {"name": "hf-token", "key": "token"}
    cluster.apply([secret, *docs])

    wait_for("dataset Ready", cluster.phase_is(SFT_DATASET.plural, "quickstart", "Ready", "Failed"))
    ds = cluster.status(SFT_DATASET.plural, "quickstart")
    assert ds["phase"] == "Ready", ds
    assert (ds["stats"]["train"], ds["stats"]["eval"]) == (1000, 32), ds["stats"]
    assert len(ds["fingerprint"]) == 64 and ds["location"].startswith("pvc://kubesft-data/")

    wait_for("job finished", cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed"))
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert st["progress"]["percent"] == 100 and st["progress"]["step"] == 20
    evaluated = [c for c in st["checkpoints"] if c.get("evalLoss") is not None]
    assert len(evaluated) >= 2, st["checkpoints"]
    samples = st["evaluation"]["samples"]
    assert samples and all("before" in s and "after" in s for s in samples)
    assert st["metrics"]["trainLoss"] > 0 and st["evaluation"]["evalLoss"] > 0
    assert st["restarts"] == 0 and st["startTime"] and st.get("completionTime"), json.dumps(st)

    output = cluster.pvc("kubesft-outputs") / "quickstart"
    assert (output / "model" / "adapter_model.safetensors").is_file()
    assert (output / "model" / "adapter_config.json").is_file()
    assert (output / "eval.json").is_file() and (output / "loss.png").is_file()

    row = kubectl("get", "sftj", "quickstart", "-n", cluster.ns, "--no-headers")
    fields = row.stdout.split()
    assert fields[1:3] == ["Succeeded", "100"], row.stdout
    assert float(fields[3]) > 0 and float(fields[4]) > 0, row.stdout

    # The token reached the pod only as a secretKeyRef: no status, Event or log line has it.
    everything = json.dumps(cluster.get(SFT_JOB.plural, "quickstart")) + json.dumps(
        cluster.get(SFT_DATASET.plural, "quickstart")
    )
    events = cluster.core.list_namespaced_event(cluster.ns)
    everything += json.dumps([e.to_dict() for e in events.items], default=str)
    assert canary not in everything and canary not in operator.logs()


def test_bad_rows_fail_the_dataset_and_no_trainer_job_is_created(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    docs = quickstart()
    data = docs[0]["data"]["train.jsonl"].splitlines()
    data[1] = (
        '{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
    )
    data[4] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    docs[0]["data"]["train.jsonl"] = "\n".join(data) + "\n"
    cluster.apply(docs)
    wait_for(
        "dataset Failed", cluster.phase_is(SFT_DATASET.plural, "quickstart", "Failed", "Ready")
    )
    ds = cluster.status(SFT_DATASET.plural, "quickstart")
    assert ds["phase"] == "Failed"
    ready = next(c for c in ds["conditions"] if c["type"] == "Ready")
    assert "row 2" in ready["message"] and "row 5" in ready["message"], ready
    assert [e["row"] for e in ds["errors"]] == [2, 5]
    wait_for("job waiting", lambda: cluster.status(SFT_JOB.plural, "quickstart").get("phase"))
    time.sleep(4)  # more than a resync period: still nothing may be created
    st = cluster.status(SFT_JOB.plural, "quickstart")
    assert st["phase"] == "WaitingForDataset"
    assert (
        next(c for c in st["conditions"] if c["type"] == "DatasetReady")["reason"]
        == "DatasetFailed"
    )
    assert cluster.jobs("kubesft.io/job=quickstart") == []
