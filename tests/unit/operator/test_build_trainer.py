"""The trainer Job, ConfigMap, Service and RBAC built from an SFTJob."""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import TrainerConfig
from kubesft.api.report import ExitCode
from kubesft.operator import build_trainer
from tests.unit.operator.fixtures import inputs, job


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return c


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_single_gpu_job_runs_the_trainer_with_restricted_security() -> None:
    j = build_trainer.build_job(job(), inputs())
    pod = j["spec"]["template"]["spec"]
    c = container(j)
    assert c["command"] == [
        "python",
        "-m",
        "kubesft_trainer",
        "train",
        "--config",
        "/etc/kubesft/config.json",
    ]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "demo-trainer"
    assert {"name": "shm", "mountPath": "/dev/shm", "readOnly": False} in c["volumeMounts"]
    assert j["metadata"]["ownerReferences"][0]["kind"] == "SFTJob"
    assert "completionMode" not in j["spec"]


def test_retry_deadline_and_ttl_map_to_the_job() -> None:
    retry = {"maxRestarts": 5, "terminationGracePeriodSeconds": 300}
    spec = build_trainer.build_job(
        job(retry=retry, activeDeadlineSeconds=3600, ttlSecondsAfterFinished=60), inputs()
    )["spec"]
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
    ) == (5, 3600, 60, 300)


def test_pod_failure_policy_follows_the_trainers_exit_code_table() -> None:
    rules = build_trainer.build_job(job(), inputs())["spec"]["podFailurePolicy"]["rules"]
    by_code = {
        code: rule["action"]
        for rule in rules
        if "onExitCodes" in rule
        for code in rule["onExitCodes"]["values"]
    }
    assert by_code == {
        ExitCode.INVALID: "FailJob",
        ExitCode.NUMERICAL_INSTABILITY: "FailJob",
        ExitCode.PREEMPTED: "Ignore",
    }  # HUNG and RETRYABLE are absent: the Job's backoff retries them
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules


def test_two_nodes_render_an_indexed_job_with_rendezvous_env() -> None:
    sft = job(resources={"nodes": 2, "gpus": 8})
    j = build_trainer.build_job(sft, inputs())
    assert j["spec"]["completionMode"] == "Indexed" and j["spec"]["completions"] == 2
    assert j["spec"]["parallelism"] == 2
    pod = j["spec"]["template"]["spec"]
    assert pod["subdomain"] == "demo-train"
    e = env(container(j))
    assert e["KUBESFT_WORLD_SIZE"] == "16" and e["KUBESFT_NUM_MACHINES"] == "2"
    assert e["KUBESFT_MACHINE_RANK"] == {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }
    assert e["KUBESFT_MAIN_ADDRESS"] == "demo-train-0.demo-train.team.svc"
    cmd = container(j)["command"]
    assert cmd[:2] == ["accelerate", "launch"] and "--machine_rank" in cmd and "--multi_gpu" in cmd
    svc = build_trainer.build_service(sft)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == {
        "kubesft.io/job": "demo"
    }


def test_kueue_label_passes_through_and_job_starts_suspended() -> None:
    sft = job()
    sft.metadata.labels["kueue.x-k8s.io/queue-name"] = "team-a"
    sft.metadata.labels["unrelated"] = "x"
    j = build_trainer.build_job(sft, inputs())
    assert j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "unrelated" not in j["metadata"]["labels"]
    assert j["spec"]["suspend"] is True
    assert build_trainer.build_job(job(), inputs())["spec"]["suspend"] is False
    assert build_trainer.build_job(job(suspend=True), inputs())["spec"]["suspend"] is True


def test_secrets_only_by_reference() -> None:
    sft = job(
        model={"name": "org/m", "tokenSecretRef": {"name": "hf", "key": "token"}},
        output={"url": "s3://b/p", "credentialsSecretRef": {"name": "aws"}},
    )
    e = env(container(build_trainer.build_job(sft, inputs())))
    assert e["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token", "optional": False}}
    assert e["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "aws"
    assert all("value" not in v for v in e.values() if isinstance(v, dict))


def test_config_map_carries_spec_and_runtime_paths() -> None:
    sft = job(
        model={"name": "tiny", "source": "pvc", "pvc": {"claimName": "models", "path": "tiny"}}
    )
    cm = build_trainer.build_config_map(sft, inputs())
    cfg = TrainerConfig.model_validate(json.loads(cm["data"]["config.json"]))
    (data,) = cfg.runtime.datasets
    assert (data.name, data.dir) == ("quickstart", "/data/kubesft-data/datasets/quickstart/g1")
    assert cfg.runtime.retention is None
    assert cfg.runtime.output_dir == "/output/run" and cfg.runtime.model_path == "/model/tiny"
    assert cfg.runtime.job_name == "demo" and cfg.runtime.dataset_fingerprint == "abc"
    assert cfg.spec == sft.spec
    mounts = {
        m["name"]: m for m in container(build_trainer.build_job(sft, inputs()))["volumeMounts"]
    }
    assert (
        mounts["model"]["readOnly"]
        and mounts["data"]["readOnly"]
        and not mounts["output"]["readOnly"]
    )


def test_trainer_account_may_patch_only_its_own_status() -> None:
    sa, role, binding = build_trainer.build_rbac(job())
    assert sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "demo-trainer"
    assert role["rules"] == [
        {
            "apiGroups": ["kubesft.io"],
            "resources": ["sftjobs/status"],
            "resourceNames": ["demo"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["subjects"][0]["name"] == "demo-trainer"


def test_scheduling_knobs_pass_through() -> None:
    sft = job(
        resources={
            "gpus": 2,
            "gpuResourceName": "amd.com/gpu",
            "cpu": "8",
            "memory": "64Gi",
            "nodeSelector": {"pool": "a100"},
            "priorityClassName": "high",
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
        }
    )
    j = build_trainer.build_job(sft, inputs())
    pod = j["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "a100"} and pod["priorityClassName"] == "high"
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    res = container(j)["resources"]
    assert res["limits"] == {"cpu": "8", "memory": "64Gi", "amd.com/gpu": "2"} == res["requests"]
    assert container(j)["command"][:2] == ["accelerate", "launch"]
