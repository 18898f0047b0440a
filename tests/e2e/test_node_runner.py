"""The node runner runs real Jobs' pods like a kubelet: env, volumes, exit codes, deletion.

These pin the test double the other e2e tests stand on: when they fail, an operator e2e
test would fail for the same reason, so they say what the fake node gets wrong first.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.node_runner import NodeRunner

T = TypeVar("T")
IMAGE = "kubesft/never-pulled:test"  # the runner ignores images


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def ns(namespace: str, kube_api: client.ApiClient, node_runner: NodeRunner) -> str:
    """The test's namespace, once its default ServiceAccount exists (pods need it)."""
    core = client.CoreV1Api(kube_api)

    def default_account() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
            return True
        except ApiException:
            return False

    wait_for("the default ServiceAccount", default_account)
    return namespace


def python_container(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "main",
        "image": IMAGE,
        "command": ["python", "-c", textwrap.dedent(code)],
        **extra,
    }


def job(name: str, container: dict[str, Any], volumes: Sequence[Any] = (), **spec: Any) -> Any:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [container],
                    "volumes": list(volumes),
                }
            },
        },
    }


def create_job(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.BatchV1Api(api).create_namespaced_job(namespace, body)


def job_condition(api: client.ApiClient, namespace: str, name: str, kind: str) -> Any:
    status = client.BatchV1Api(api).read_namespaced_job_status(name, namespace).status
    for cond in status.conditions or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def job_pods(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={name}")
    return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)


def terminated(pod: Any) -> Any:
    return pod.status.container_statuses[0].state.terminated


def test_job_completes_with_env_configmap_pvc_and_termination_message(
    kube_api: client.ApiClient, ns: str, node_runner: NodeRunner
) -> None:
    core = client.CoreV1Api(kube_api)
    config_map = {"metadata": {"name": "greeting"}, "data": {"greeting.txt": "hello"}}
    core.create_namespaced_config_map(ns, config_map)
    code = """
        import os, pathlib, sys
        greeting = pathlib.Path("/etc/kubesft-e2e/greeting.txt").read_text()
        pathlib.Path(sys.argv[1]).write_text(f"{os.environ['POD_NAME']}: {greeting}")
        try:
            pathlib.Path("/etc/kubesft-e2e/new").write_text("x")
            read_only = "no"
        except OSError:
            read_only = "yes"
        pathlib.Path("/dev/termination-log").write_text(f"done; read-only={read_only}")
    """
    container = python_container(
        code,
        args=["$(OUT)/result.txt"],
        env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "OUT", "value": "/data/kubesft-e2e"},
        ],
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/kubesft-e2e", "readOnly": True},
            {"name": "work", "mountPath": "/data/kubesft-e2e"},
        ],
    )
    volumes = [
        {"name": "config", "configMap": {"name": "greeting"}},
        {"name": "work", "persistentVolumeClaim": {"claimName": "work"}},
    ]
    create_job(kube_api, ns, job("hello", container, volumes))

    wait_for("Job hello to complete", lambda: job_condition(kube_api, ns, "hello", "Complete"))
    (pod,) = job_pods(kube_api, ns, "hello")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == "kubesft-local"
    state = terminated(pod)
    assert (state.exit_code, state.reason) == (0, "Completed")
    assert state.message == "done; read-only=yes"
    result = node_runner.pvc_path(ns, "work") / "result.txt"
    assert result.read_text() == f"{pod.metadata.name}: hello"


def test_pod_gets_env_and_volumes_as_a_kubelet_gives_them(
    kube_api: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    settings = {"mode": "fast", "app.yaml": "lr: 0.1\n"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": settings})
    secret = {"token": "s3cret", "other": "x"}
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": secret})
    work = {"name": "work", "mountPath": "/kubesft-e2e-work"}
    init = {
        "name": "prepare",
        "image": IMAGE,
        "command": ["sh", "-c", "echo prepared > /kubesft-e2e-work/ready"],
        "volumeMounts": [work],
    }
    code = """
        import base64, json, os, pathlib, sys

        def read(path):
            return pathlib.Path(path).read_text()

        token = read("/var/run/kubesft-e2e-token/token").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        names = "CFG_mode TOKEN MISSING NS APP NODE SA POD_IP HOST_IP MEM_MI CPU_M GREETING"
        result = {
            "env": {name: os.environ.get(name) for name in names.split()},
            "uid_set": len(os.environ["UID_"]) == 36,
            "apiserver": os.environ["KUBERNETES_SERVICE_HOST"],
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "init": read("ready"),
            "app_yaml": read("/etc/kubesft-e2e-app/app.yaml"),
            "secret": read("/etc/kubesft-e2e-creds/nested/token"),
            "secret_mode": oct(os.stat("/etc/kubesft-e2e-creds/nested/token").st_mode & 0o777),
            "labels": read("/etc/kubesft-e2e-podinfo/labels"),
            "audience": claims["aud"],
        }
        pathlib.Path("/dev/termination-log").write_text(json.dumps(result))
    """

    def field(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    def resource(name: str, path: str, divisor: str) -> dict[str, Any]:
        ref = {"resource": path, "divisor": divisor}
        return {"name": name, "valueFrom": {"resourceFieldRef": ref}}

    missing = {"name": "settings", "key": "absent", "optional": True}
    main = python_container(
        code,
        args=["$(GREETING)", "$(UNDEFINED)"],
        workingDir="/kubesft-e2e-work",
        resources={"requests": {"cpu": "250m"}, "limits": {"memory": "256Mi"}},
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MISSING", "valueFrom": {"configMapKeyRef": missing}},
            field("NS", "metadata.namespace"),
            field("UID_", "metadata.uid"),
            field("APP", "metadata.labels['app']"),
            field("NODE", "spec.nodeName"),
            field("SA", "spec.serviceAccountName"),
            field("POD_IP", "status.podIP"),
            field("HOST_IP", "status.hostIP"),
            resource("MEM_MI", "limits.memory", "1Mi"),
            resource("CPU_M", "requests.cpu", "1m"),
            {"name": "GREETING", "value": "hello $(NS) $$(NS)"},
        ],
        volumeMounts=[
            work,
            {
                "name": "settings",
                "mountPath": "/etc/kubesft-e2e-app/app.yaml",
                "subPath": "app.yaml",
            },
            {"name": "creds", "mountPath": "/etc/kubesft-e2e-creds", "readOnly": True},
            {"name": "podinfo", "mountPath": "/etc/kubesft-e2e-podinfo"},
            {"name": "token", "mountPath": "/var/run/kubesft-e2e-token"},
        ],
    )
    secret_items = [{"key": "token", "path": "nested/token", "mode": 0o400}]
    labels_item = {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
    token_source = {"audience": "kubesft-e2e", "expirationSeconds": 600, "path": "token"}
    volumes = [
        {"name": "work", "emptyDir": {}},
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds", "items": secret_items}},
        {"name": "podinfo", "downwardAPI": {"items": [labels_item]}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": token_source}]}},
    ]
    pod = {
        "metadata": {"name": "kubelet-like", "labels": {"app": "demo"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [init],
            "containers": [main],
            "volumes": volumes,
        },
    }
    core.create_namespaced_pod(ns, pod)

    def finished() -> Any:
        status = core.read_namespaced_pod("kubelet-like", ns).status
        return status if status.phase in ("Succeeded", "Failed") else None

    status = wait_for("the pod to finish", finished)
    assert status.phase == "Succeeded"
    assert status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert json.loads(status.container_statuses[0].state.terminated.message) == {
        "env": {
            "CFG_mode": "fast",
            "TOKEN": "s3cret",
            "MISSING": None,
            "NS": ns,
            "APP": "demo",
            "NODE": "kubesft-local",
            "SA": "default",
            "POD_IP": "127.0.0.1",
            "HOST_IP": "127.0.0.1",
            "MEM_MI": "256",
            "CPU_M": "250",
            "GREETING": f"hello {ns} $(NS)",
        },
        "uid_set": True,
        "apiserver": "127.0.0.1",
        "argv": [f"hello {ns} $(NS)", "$(UNDEFINED)"],
        "cwd": "/kubesft-e2e-work",
        "init": "prepared\n",
        "app_yaml": "lr: 0.1\n",
        "secret": "s3cret",
        "secret_mode": "0o400",
        "labels": 'app="demo"\n',
        "audience": ["kubesft-e2e"],
    }


def test_indexed_job_pods_see_their_completion_index(
    kube_api: client.ApiClient, ns: str, node_runner: NodeRunner
) -> None:
    code = """
        import os
        index = os.environ["JOB_COMPLETION_INDEX"]
        open(f"/kubesft-e2e/out/{index}.txt", "w").write(os.environ["HOSTNAME"])
    """
    container = python_container(
        code, volumeMounts=[{"name": "out", "mountPath": "/kubesft-e2e/out"}]
    )
    volumes = [{"name": "out", "persistentVolumeClaim": {"claimName": "indexed"}}]
    body = job("indexed", container, volumes, completions=2, parallelism=2)
    body["spec"]["completionMode"] = "Indexed"
    create_job(kube_api, ns, body)

    wait_for("Job indexed to complete", lambda: job_condition(kube_api, ns, "indexed", "Complete"))
    pods = job_pods(kube_api, ns, "indexed")
    assert len(pods) == 2
    # The Job controller injects the variable itself, as a fieldRef to the index label
    # (Kubernetes >= 1.28; the annotation before that); the runner resolves either.
    key = "batch.kubernetes.io/job-completion-index"
    injected = {e.name: e for e in pods[0].spec.containers[0].env}
    assert injected["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path in (
        f"metadata.labels['{key}']",
        f"metadata.annotations['{key}']",
    )
    out = node_runner.pvc_path(ns, "indexed")
    by_index = {p.metadata.annotations[key]: p.metadata.name for p in pods}
    assert {f"{i}.txt": (out / f"{i}.txt").read_text() for i in "01"} == {
        f"{i}.txt": by_index[i] for i in "01"
    }


def test_failing_container_fails_the_pod_and_the_job_retries_per_backoff_limit(
    kube_api: client.ApiClient, ns: str
) -> None:
    code = """
        import sys
        print("something went wrong", file=sys.stderr)
        sys.exit(3)
    """
    container = python_container(code, terminationMessagePolicy="FallbackToLogsOnError")
    create_job(kube_api, ns, job("fails", container, backoffLimit=1))

    failed = wait_for(
        "Job fails to fail", lambda: job_condition(kube_api, ns, "fails", "Failed"), timeout=120
    )
    assert failed.reason == "BackoffLimitExceeded"
    pods = job_pods(kube_api, ns, "fails")
    assert [p.status.phase for p in pods] == ["Failed", "Failed"]
    for pod in pods:
        state = terminated(pod)
        assert (state.exit_code, state.reason) == (3, "Error")
        assert state.message == "something went wrong"


def test_on_failure_restarts_the_container_in_place(kube_api: client.ApiClient, ns: str) -> None:
    code = """
        import pathlib, sys
        marker = pathlib.Path("/kubesft-e2e/scratch/tried")
        if not marker.exists():
            marker.touch()
            sys.exit(1)
    """
    container = python_container(
        code, volumeMounts=[{"name": "s", "mountPath": "/kubesft-e2e/scratch"}]
    )
    body = job("retries", container, [{"name": "s", "emptyDir": {}}], backoffLimit=3)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    create_job(kube_api, ns, body)

    wait_for("Job retries to complete", lambda: job_condition(kube_api, ns, "retries", "Complete"))
    (pod,) = job_pods(kube_api, ns, "retries")
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert status.state.terminated.exit_code == 0


@pytest.mark.parametrize(
    ("how", "exit_code", "reason"),
    [("oom", 137, "OOMKilled"), ("sigterm", 143, "Error")],
)
def test_killed_container_is_reported(
    kube_api: client.ApiClient,
    ns: str,
    node_runner: NodeRunner,
    how: str,
    exit_code: int,
    reason: str,
) -> None:
    if how == "oom":
        node_runner.simulate_oom(lambda pod: pod["metadata"]["namespace"] == ns)
    create_job(kube_api, ns, job("killed", python_container("import time; time.sleep(120)")))
    if how == "sigterm":
        wait_for(
            "the container to run",
            lambda: [p for p in node_runner.processes() if p.namespace == ns],
        )
        pod_name = job_pods(kube_api, ns, "killed")[0].metadata.name
        node_runner.kill(ns, pod_name, signal.SIGTERM)

    wait_for("Job killed to fail", lambda: job_condition(kube_api, ns, "killed", "Failed"))
    (pod,) = job_pods(kube_api, ns, "killed")
    assert pod.status.phase == "Failed"
    state = terminated(pod)
    assert (state.exit_code, state.reason) == (exit_code, reason)


@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
def test_deleting_a_running_job_kills_its_process_and_removes_the_pod(
    kube_api: client.ApiClient, ns: str, node_runner: NodeRunner, propagation: str
) -> None:
    create_job(kube_api, ns, job("doomed", python_container("import time; time.sleep(300)")))
    (process,) = wait_for(
        "the container to run", lambda: [p for p in node_runner.processes() if p.namespace == ns]
    )

    client.BatchV1Api(kube_api).delete_namespaced_job(
        "doomed", ns, body={"propagationPolicy": propagation}
    )

    def process_gone() -> bool:
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for("the container process to exit", process_gone, timeout=30)
    wait_for("the pod to be deleted", lambda: not job_pods(kube_api, ns, "doomed"), timeout=60)


def test_in_pod_service_account_token_calls_the_apiserver_under_rbac(
    kube_api: client.ApiClient, ns: str
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    meta = {"name": "pod-reader"}
    core.create_namespaced_service_account(ns, {"metadata": meta})
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    rbac.create_namespaced_role(ns, {"metadata": meta, "rules": [rule]})
    subject = {"kind": "ServiceAccount", "name": "pod-reader", "namespace": ns}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}
    rbac.create_namespaced_role_binding(
        ns, {"metadata": meta, "roleRef": role_ref, "subjects": [subject]}
    )
    code = """
        import base64, json, os, pathlib
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        config.load_incluster_config()
        core = client.CoreV1Api()
        sa = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
        namespace = (sa / "namespace").read_text()
        pod = core.read_namespaced_pod(os.environ["POD_NAME"], namespace)
        try:
            core.list_namespaced_secret(namespace)
            secrets = "allowed"
        except ApiException as err:
            secrets = err.status
        claims = (sa / "token").read_text().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        result = {
            "namespace": namespace,
            "phase": pod.status.phase,
            "secrets": secrets,
            "bound_pod": claims["kubernetes.io"]["pod"]["name"],
        }
        pathlib.Path("/dev/termination-log").write_text(json.dumps(result))
    """
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    body = job("whoami", python_container(code, env=env))
    body["spec"]["template"]["spec"]["serviceAccountName"] = "pod-reader"
    create_job(kube_api, ns, body)

    wait_for("Job whoami to complete", lambda: job_condition(kube_api, ns, "whoami", "Complete"))
    (pod,) = job_pods(kube_api, ns, "whoami")
    assert json.loads(terminated(pod).message) == {
        "namespace": ns,
        "phase": "Running",
        "secrets": 403,
        "bound_pod": pod.metadata.name,
    }


def test_pods_that_do_not_fit_stay_pending_with_the_reason(
    kube_api: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)

    def pod(name: str, **spec: Any) -> dict[str, Any]:
        container = python_container("pass", resources=spec.pop("resources", {}))
        return {
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container], **spec},
        }

    gpus = {"limits": {"nvidia.com/gpu": "2"}}
    core.create_namespaced_pod(ns, pod("elsewhere", nodeSelector={"pool": "absent"}))
    core.create_namespaced_pod(
        ns, pod("too-many-gpus", resources={"limits": {"nvidia.com/gpu": "9"}})
    )
    core.create_namespaced_pod(ns, pod("two-gpus", resources=gpus))

    def phase(name: str) -> str:
        return str(core.read_namespaced_pod(name, ns).status.phase)

    wait_for("the GPU pod to succeed", lambda: phase("two-gpus") == "Succeeded")
    for name, message in [
        ("elsewhere", "didn't match Pod's node affinity/selector"),
        ("too-many-gpus", "Insufficient nvidia.com/gpu"),
    ]:
        status = core.read_namespaced_pod(name, ns).status
        scheduled = {c.type: c for c in status.conditions or []}["PodScheduled"]
        assert (status.phase, scheduled.status, scheduled.reason) == (
            "Pending",
            "False",
            "Unschedulable",
        )
        assert message in scheduled.message


def test_container_waits_for_a_missing_secret_then_runs(
    kube_api: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    ref = {"secretKeyRef": {"name": "late", "key": "value"}}
    container = python_container("pass", env=[{"name": "LATE", "valueFrom": ref}])
    pod = {
        "metadata": {"name": "patient"},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    core.create_namespaced_pod(ns, pod)

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("patient", ns).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting else None

    assert wait_for("the config error", waiting_reason) == "CreateContainerConfigError"
    core.create_namespaced_secret(ns, {"metadata": {"name": "late"}, "stringData": {"value": "x"}})
    wait_for(
        "the pod to succeed",
        lambda: core.read_namespaced_pod("patient", ns).status.phase == "Succeeded",
    )
