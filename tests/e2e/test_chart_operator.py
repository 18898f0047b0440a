"""The operator as the Helm chart deploys it: its Deployment's pod, its ServiceAccount's
token, exactly the chart's RBAC — and an SFTJob trained to Succeeded by it."""

from __future__ import annotations

import subprocess
from typing import Any

from kubesft.api import SFT_DATASET, SFT_JOB
from tests.support.controlplane import build_binaries, free_port
from tests.support.node_runner import NodeRunner
from tests.support.operator_process import refusals
from tests.support.sft_cluster import ROOT, Cluster, quickstart, wait_for

OPERATOR_IMAGE = "ghcr.io/kubesft/operator"


def test_chart_deployed_operator_drives_a_job_to_success(
    cluster: Cluster, node_runner: NodeRunner, kube_config: str, namespace: str
) -> None:
    helm = str(build_binaries() / "helm")
    node_runner.set_entrypoint(OPERATOR_IMAGE, ["kubesft", "operator", "run"])
    release = "sft"
    # The operator runs as a local process on the fake node: free host ports for its servers.
    sets = [
        f"watchNamespaces={{{namespace}}}",
        "resyncSeconds=3",
        "logFormat=text",
        "trainer.progressIntervalSeconds=1",
        f"metrics.port={free_port()}",
        f"health.port={free_port()}",
    ]
    install = [
        helm,
        "install",
        release,
        str(ROOT / "helm" / "kubesft"),
        "-n",
        namespace,
        "--kubeconfig",
        kube_config,
        *[a for s in sets for a in ("--set", s)],
    ]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    _drop_tmp_volume(kube_config, namespace, f"{release}-kubesft")
    try:
        (pod,) = wait_for("the operator pod running", lambda: _running_operator(cluster))
        operator_log = node_runner.log_path(namespace, pod, "operator")
        cluster.apply(quickstart())
        finished = cluster.phase_is(SFT_JOB.plural, "quickstart", "Succeeded", "Failed")
        try:
            wait_for("job finished", finished, timeout=180)
        except AssertionError as err:
            raise AssertionError(
                f"{err}; operator log:\n{operator_log.read_text()[:3000]}"
            ) from None
        st = cluster.status(SFT_JOB.plural, "quickstart")
        assert st["phase"] == "Succeeded", st
        assert cluster.status(SFT_DATASET.plural, "quickstart")["phase"] == "Ready"
        log = operator_log.read_text()
        refused = refusals(log)
        assert not refused, "\n".join(refused)
    finally:
        subprocess.run(
            [helm, "uninstall", release, "-n", namespace, "--kubeconfig", kube_config],
            capture_output=True,
            check=False,
        )
        node_runner.set_entrypoint(OPERATOR_IMAGE, None)


def _drop_tmp_volume(kube_config: str, namespace: str, deployment: str) -> None:
    """The chart mounts an emptyDir at /tmp; the node runner cannot mount over a directory
    that holds this checkout (CI clones may live under /tmp), so the test pod goes without
    it. The RBAC, ServiceAccount, env and arguments under test are the chart's own."""
    from kubernetes import client, config

    apps = client.AppsV1Api(config.new_client_from_config(config_file=kube_config))
    pod = apps.read_namespaced_deployment(deployment, namespace).spec.template.spec
    mounts = [m.name for m in pod.containers[0].volume_mounts]
    volumes = [v.name for v in pod.volumes]
    patch = [
        {
            "op": "remove",
            "path": f"/spec/template/spec/containers/0/volumeMounts/{mounts.index('tmp')}",
        },
        {"op": "remove", "path": f"/spec/template/spec/volumes/{volumes.index('tmp')}"},
    ]
    apps.patch_namespaced_deployment(
        deployment, namespace, patch, _content_type="application/json-patch+json"
    )


def _running_operator(cluster: Cluster) -> list[str]:
    pods: Any = cluster.core.list_namespaced_pod(
        cluster.ns, label_selector="app.kubernetes.io/component=operator"
    )
    return [p.metadata.name for p in pods.items if p.status.phase == "Running"]
