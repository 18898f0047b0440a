"""The Helm chart: what it renders, that it installs, and that its RBAC is exactly enough.

Rendering tests run `helm template` (no cluster); the install tests use the cluster under
test and ask the apiserver what the operator's ServiceAccount may do.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesft.api import parse_object
from kubesft.operator import build_trainer
from kubesft.operator.config import ENV_PREFIX, OperatorConfig
from tests.support.cluster_objects import dataset_inputs
from tests.support.controlplane import build_binaries, free_port
from tests.support.invalid_manifests import valid_dataset, valid_job
from tests.support.operator_process import refusals

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kubesft"
RELEASE_NS = "kubesft-system"
Manifest = dict[str, Any]
Helm = Callable[..., "subprocess.CompletedProcess[str]"]
Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]

# What the operator does in a watched namespace, read off kubesft/operator/kube.py and the
# kopf handlers: (verb, resource, subresource).
OPERATOR_NEEDS = [
    *[(v, "sftjobs.kubesft.io", "") for v in ("get", "list", "watch")],
    *[(v, "sftdatasets.kubesft.io", "") for v in ("get", "list", "watch")],
    *[(v, "sftjobs.kubesft.io", "status") for v in ("get", "patch")],
    *[(v, "sftdatasets.kubesft.io", "status") for v in ("get", "patch")],
    *[(v, "jobs.batch", "") for v in ("create", "get", "list", "watch", "patch")],
    *[(v, "pods", "") for v in ("get", "list", "watch")],
    *[(v, "configmaps", "") for v in ("create", "get", "patch")],
    ("get", "persistentvolumeclaims", ""),
    *[(v, "services", "") for v in ("create", "get")],
    *[(v, "serviceaccounts", "") for v in ("create", "get")],
    *[(v, "roles.rbac.authorization.k8s.io", "") for v in ("create", "get")],
    *[(v, "rolebindings.rbac.authorization.k8s.io", "") for v in ("create", "get")],
    ("create", "events", ""),
]
OPERATOR_MUST_NOT = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("create", "pods", ""),
    ("create", "pods", "exec"),
    ("delete", "pods", ""),
    ("create", "sftjobs.kubesft.io", ""),
    ("patch", "sftjobs.kubesft.io", ""),
    ("delete", "sftjobs.kubesft.io", ""),
    ("delete", "sftdatasets.kubesft.io", ""),
    ("delete", "jobs.batch", ""),
    ("update", "configmaps", ""),
    ("delete", "configmaps", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
    ("bind", "roles.rbac.authorization.k8s.io", ""),
    ("create", "serviceaccounts", "token"),
    ("create", "events.events.k8s.io", ""),
]
# kopf's cluster-scoped observers (the `-scanning` ClusterRole).
SCANNING = [
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", ""),
]
NAMESPACE_SCANNING = [("list", "namespaces", ""), ("watch", "namespaces", "")]
NEVER_CLUSTER_SCOPED = [
    ("get", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("get", "nodes", ""),
]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Run the pinned helm with its own (empty) config, cache and data directories."""
    binary = str(build_binaries() / "helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    return run


def render(helm: Helm, *sets: str, values: Path | None = None) -> list[Manifest]:
    args = ["template", "rel", str(CHART), "--namespace", RELEASE_NS]
    args += [a for s in sets for a in ("--set", s)]
    if values is not None:
        args += ["--values", str(values)]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def the(docs: list[Manifest], kind: str) -> Manifest:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[Manifest]) -> Manifest:
    containers = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def env_of(docs: list[Manifest]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"]}


def namespace_args(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a in ("--namespace", "-n")]


def rules_mention(role: Manifest, group: str) -> bool:
    return any(group in rule.get("apiGroups", []) for rule in role.get("rules", []))


CUSTOM_VALUES = """\
image: {repository: registry.example.com/kubesft/operator, tag: dev, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
watchNamespaces: [team-a, team-b]
logFormat: text
verbose: true
resyncSeconds: 12.5
trainer:
  image: registry.example.com/kubesft/trainer:dev
  gpuMemoryGiB: {nvidia.com/gpu: 40, amd.com/gpu: 192}
  runAsUser: 2000
datasets:
  dataClaim: shared-data
  prepare: {cpu: 2, memory: 4Gi, backoffLimit: 0, ttlSecondsAfterFinished: 600}
extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
serviceAccount: {create: false, name: platform-operator}
rbac: {create: true, clusterScanning: false}
metrics:
  port: 9090
  serviceMonitor: {enabled: true, labels: {release: prometheus}}
resources: {requests: {cpu: 50m, memory: 128Mi}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
"""


@pytest.fixture
def custom_values(tmp_path: Path) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(CUSTOM_VALUES)
    return path


# --- files --------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_to_generated_crds() -> None:
    generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    packaged = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "no CRDs in crds/"
    assert sorted(packaged) == sorted(generated), "run: cp crds/*.yaml helm/kubesft/crds/"
    stale = [name for name in generated if packaged[name] != generated[name]]
    assert not stale, f"helm/kubesft/crds/ is stale ({stale}); run: cp crds/*.yaml {CHART}/crds/"


def test_lint_strict_passes_with_defaults(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART))


def test_lint_strict_passes_with_custom_values(helm: Helm, custom_values: Path) -> None:
    helm("lint", "--strict", str(CHART), "--values", str(custom_values))


# --- rendering ----------------------------------------------------------------------------


def test_deployment_is_one_restricted_replica_replaced_by_recreate(helm: Helm) -> None:
    docs = render(helm)
    deployment = the(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(docs)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert container(docs)["resources"]["limits"]["memory"]


def test_probes_use_the_kopf_liveness_endpoint_the_operator_is_told(helm: Helm) -> None:
    c = container(render(helm))
    args = c["args"]
    liveness_url = args[args.index("--liveness") + 1]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert liveness_url == f"http://0.0.0.0:{ports['health']}/healthz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert namespace_args(args) == []  # cluster-wide by default


def test_every_operator_setting_is_a_chart_value_that_parses(helm: Helm) -> None:
    docs = render(helm)
    env = {k: v for k, v in env_of(docs).items() if k.startswith(ENV_PREFIX)}
    fields = {ENV_PREFIX + name.upper() for name in OperatorConfig.model_fields}
    assert set(env) == fields, "chart env and OperatorConfig differ"
    config = OperatorConfig.from_env(env)
    assert config == OperatorConfig(), "the chart's defaults differ from OperatorConfig's"
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert config.metrics_port == ports["metrics"]


def test_custom_values_reach_the_operator(helm: Helm, custom_values: Path) -> None:
    docs = render(helm, values=custom_values)
    env = env_of(docs)
    config = OperatorConfig.from_env({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    assert config.trainer_image == "registry.example.com/kubesft/trainer:dev"
    assert config.gpu_memory_gib == {"nvidia.com/gpu": 40.0, "amd.com/gpu": 192.0}
    prepare = (config.data_claim, config.prepare_cpu, config.prepare_memory)
    assert prepare == ("shared-data", "2", "4Gi")
    assert (config.prepare_backoff_limit, config.prepare_ttl_seconds) == (0, 600)
    assert (config.resync_seconds, config.run_as_user, config.metrics_port) == (12.5, 2000, 9090)
    assert config.cluster_scanning is False  # rbac.clusterScanning: false
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    c = container(docs)
    assert c["image"] == "registry.example.com/kubesft/operator:dev"
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == 9090
    assert c["args"][c["args"].index("--log-format") + 1] == "text"
    assert "--verbose" in c["args"]


def test_no_rbac_rule_uses_a_wildcard(helm: Helm) -> None:
    for sets in ((), ("watchNamespaces={a,b}",)):
        roles = [d for d in render(helm, *sets) if d["kind"] in ("Role", "ClusterRole")]
        assert roles
        for role in roles:
            for rule in role["rules"]:
                assert "nonResourceURLs" not in rule, role["metadata"]["name"]
                for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert not any("*" in item for item in rule.get(key, [])), (role, rule)


def test_cluster_wide_by_default_binds_a_cluster_role(helm: Helm) -> None:
    docs = render(helm)
    operator_roles = [r for r in of_kind(docs, "ClusterRole") if rules_mention(r, "kubesft.io")]
    assert len(operator_roles) == 1
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    bound = {b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")}
    assert operator_roles[0]["metadata"]["name"] in bound


def test_watch_namespaces_gives_a_role_per_namespace_and_no_cluster_role(helm: Helm) -> None:
    docs = render(helm, "watchNamespaces={a,b}")
    args = container(docs)["args"]
    assert " --namespace a --namespace b" in " " + " ".join(args)
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["a", "b"]
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    account = the(docs, "ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": RELEASE_NS}
        ]
    for role in of_kind(docs, "ClusterRole"):  # only kopf's read-only scanning role
        assert not rules_mention(role, "kubesft.io"), role["metadata"]["name"]
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        assert verbs <= {"list", "watch"}, verbs


def test_rbac_create_false_renders_no_rbac(helm: Helm) -> None:
    for sets in (("rbac.create=false",), ("rbac.create=false", "watchNamespaces={a}")):
        kinds = {d["kind"] for d in render(helm, *sets)}
        assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}, sets


def test_existing_service_account_is_used_not_created(helm: Helm) -> None:
    docs = render(helm, "serviceAccount.create=false", "serviceAccount.name=x")
    assert not of_kind(docs, "ServiceAccount")
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "x"
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert [s["name"] for s in binding["subjects"]] == ["x"]


def test_existing_service_account_needs_a_name(helm: Helm) -> None:
    proc = helm("template", "rel", str(CHART), "--set", "serviceAccount.create=false", check=False)
    assert proc.returncode != 0
    assert "serviceAccount.name" in proc.stderr


def test_service_monitor_is_optional(helm: Helm) -> None:
    assert not of_kind(render(helm), "ServiceMonitor")
    docs = render(helm, "metrics.serviceMonitor.enabled=true")
    monitor = the(docs, "ServiceMonitor")
    service = the(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


@pytest.mark.parametrize("value", ["replicaCount=2", "image.tagg=x", "rbac.enabled=true"])
def test_schema_rejects_unknown_values(helm: Helm, value: str) -> None:
    proc = helm("template", "rel", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0, f"{value} was accepted"
    assert "additional properties" in proc.stderr.lower() or "schema" in proc.stderr.lower()


def test_schema_rejects_a_wrong_type(helm: Helm) -> None:
    proc = helm("template", "rel", str(CHART), "--set-json", 'watchNamespaces="a"', check=False)
    assert proc.returncode != 0


# --- install into the cluster under test --------------------------------------------------


@pytest.fixture
def install(helm: Helm, kube_config: str, namespace: str) -> Iterator[Callable[..., str]]:
    """Install the chart into the test's namespace; uninstall (cluster-scoped RBAC) after."""
    releases: list[str] = []

    def run(*sets: str) -> str:
        release = f"ksft-{uuid.uuid4().hex[:6]}"
        args = ["install", release, str(CHART), "--namespace", namespace]
        args += ["--kubeconfig", kube_config, *(a for s in sets for a in ("--set", s))]
        helm(*args)
        releases.append(release)
        return release

    yield run
    for release in releases:
        helm(
            "uninstall", release, "--namespace", namespace, "--kubeconfig", kube_config, check=False
        )


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, sub: str, ns: str | None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}"]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", ns] if ns else []
    proc = kubectl(*args)
    if proc.stdout.strip() not in ("yes", "no"):
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}")
    return proc.stdout.strip() == "yes"


def access_problems(
    kubectl: Kubectl,
    user: str,
    namespace: str | None,
    allowed: list[tuple[str, str, str]],
    denied: list[tuple[str, str, str]],
) -> list[str]:
    """Ask the apiserver about every (verb, resource, subresource); describe each surprise."""
    checks = [(c, True) for c in allowed] + [(c, False) for c in denied]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda c: can_i(kubectl, user, *c[0], namespace), checks))
    where = f"in {namespace}" if namespace else "cluster-wide"
    return [
        f"{'cannot' if want else 'can'} {verb} {res}{'/' + sub if sub else ''} {where}"
        for ((verb, res, sub), want), got in zip(checks, answers, strict=True)
        if got != want
    ]


def service_account(namespace: str, release: str) -> str:
    return f"system:serviceaccount:{namespace}:{release}-kubesft"


def test_install_cluster_wide_grants_exactly_what_the_operator_needs(
    install: Callable[..., str], kubectl: Kubectl, namespace: str
) -> None:
    release = install()
    name = f"{release}-kubesft"
    for ref in (f"deployment/{name}", f"serviceaccount/{name}", f"service/{name}-metrics"):
        assert kubectl("get", "-n", namespace, ref).returncode == 0, ref
    for ref in (
        f"clusterrole/{name}",
        f"clusterrolebinding/{name}",
        f"clusterrole/{name}-scanning",
        f"clusterrolebinding/{name}-scanning",
    ):
        assert kubectl("get", ref).returncode == 0, ref
    for crd in ("sftjobs.kubesft.io", "sftdatasets.kubesft.io"):
        assert kubectl("get", "crd", crd).returncode == 0, crd
    user = service_account(namespace, release)
    problems = access_problems(kubectl, user, namespace, OPERATOR_NEEDS, OPERATOR_MUST_NOT)
    problems += access_problems(kubectl, user, "default", OPERATOR_NEEDS[:3], [])
    problems += access_problems(
        kubectl, user, None, SCANNING, NEVER_CLUSTER_SCOPED + NAMESPACE_SCANNING
    )
    assert not problems, "\n".join(problems)


def test_install_namespaced_grants_nothing_outside_the_watched_namespace(
    install: Callable[..., str], kubectl: Kubectl, namespace: str
) -> None:
    release = install(f"watchNamespaces={{{namespace}}}")
    name = f"{release}-kubesft"
    for ref in (f"role/{name}", f"rolebinding/{name}", f"deployment/{name}"):
        assert kubectl("get", "-n", namespace, ref).returncode == 0, ref
    assert kubectl("get", f"clusterrole/{name}").returncode != 0
    user = service_account(namespace, release)
    problems = access_problems(kubectl, user, namespace, OPERATOR_NEEDS, OPERATOR_MUST_NOT)
    problems += access_problems(kubectl, user, "default", [], OPERATOR_NEEDS)
    problems += access_problems(
        kubectl, user, None, SCANNING + NAMESPACE_SCANNING, NEVER_CLUSTER_SCOPED
    )
    assert not problems, "\n".join(problems)


def test_operator_may_create_the_trainer_rbac_it_hands_out(
    install: Callable[..., str], kubectl: Kubectl, namespace: str
) -> None:
    """RBAC refuses a Role granting more than its creator holds: create the real ones as it.

    Not a dry run: the RoleBinding's check resolves its Role, which must exist.
    """
    release = install(f"watchNamespaces={{{namespace}}}")
    # A real owner: kube-controller-manager's garbage collector (when running) deletes
    # children whose owner does not exist, and the RoleBinding check needs its Role.
    created = kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        "-o",
        "json",
        input=json.dumps(valid_job("llama")),
        check=True,
    )
    meta = json.loads(created.stdout)["metadata"]
    job = parse_object({**valid_job("llama"), "metadata": meta})
    as_operator = f"--as={service_account(namespace, release)}"
    for manifest in build_trainer.build_rbac(job):
        proc = kubectl("create", "-f", "-", as_operator, input=json.dumps(manifest))
        assert proc.returncode == 0, f"{manifest['kind']}: {proc.stderr}"


def token_kubeconfig(
    kubectl: Kubectl, admin: str, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as ``account`` with a short-lived token."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h", check=True)
    cluster = yaml.safe_load(Path(admin).read_text())["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, namespace: str, log: Path, **extra_env: str
) -> Iterator[int]:
    """`kubesft operator run --namespace <namespace>` in a subprocess; yields its health port."""
    health = free_port()
    argv = [sys.executable, "-m", "kubesft.cli", "operator", "run", "--namespace", namespace]
    argv += ["--liveness", f"http://127.0.0.1:{health}/healthz", "--log-format", "text"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBESFT_METRICS_PORT": "0", **extra_env}
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield health
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as rsp:
            return bool(rsp.status == 200)
    except OSError:
        return False


def wait_for(what: str, check: Callable[[], bool], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; operator log:\n{log.read_text()}")
        time.sleep(0.5)


@pytest.mark.parametrize("scanning", [True, False], ids=["cluster-scanning", "namespaced-only"])
def test_operator_reconciles_with_nothing_but_the_charts_rbac(
    install: Callable[..., str],
    kubectl: Kubectl,
    kube_config: str,
    namespace: str,
    tmp_path: Path,
    scanning: bool,
) -> None:
    """Run the real operator as the chart's ServiceAccount: every call it makes is allowed.

    One SFTDataset to prepare (ConfigMap, Job, status, Events) and one SFTJob whose dataset
    is Ready (trainer ServiceAccount, Role, RoleBinding, ConfigMap, Job, status, Events).
    Without `rbac.clusterScanning` there is no cluster-scoped grant at all, and the
    operator, told so as the chart's Deployment tells it, asks for none.
    """
    scanning_value = "true" if scanning else "false"
    release = install(f"watchNamespaces={{{namespace}}}", f"rbac.clusterScanning={scanning_value}")
    job = valid_job("llama")
    job["spec"]["dataset"] = {"name": "ready-data"}
    items = [*dataset_inputs(), valid_dataset("ready-data"), valid_dataset("fresh-data"), job]
    objects = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    kubectl("create", "-n", namespace, "-f", "-", input=objects, check=True)
    ready = {"phase": "Ready", "observedGeneration": 1, "location": "pvc://kubesft-data/ready"}
    patch = json.dumps({"status": ready})
    kubectl(
        "patch",
        "-n",
        namespace,
        "sftds/ready-data",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
        check=True,
    )
    account = f"{release}-kubesft"
    config = token_kubeconfig(kubectl, kube_config, namespace, account, tmp_path / "kubeconfig")

    def exists(ref: str) -> bool:
        return kubectl("get", "-n", namespace, ref).returncode == 0

    def field(ref: str, path: str) -> str:
        return kubectl("get", "-n", namespace, ref, "-o", f"jsonpath={{{path}}}").stdout

    log = tmp_path / "operator.log"
    env = {"KUBESFT_CLUSTER_SCANNING": scanning_value}
    with operator_process(config, namespace, log, **env) as health:
        wait_for("the liveness endpoint", lambda: healthy(health), log)
        wait_for(
            "the preparation Job",
            lambda: (
                "fresh-data-prep-g1-"
                in kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout
            ),
            log,
        )
        wait_for(
            "the SFTDataset's status", lambda: bool(field("sftds/fresh-data", ".status.phase")), log
        )
        wait_for("the trainer Job", lambda: exists("job/llama-train"), log)
        wait_for(
            "the trainer ConfigMap handed to the Job",
            lambda: "Job" in field("cm/llama-train-config", ".metadata.ownerReferences[*].kind"),
            log,
        )
        wait_for(
            "the SFTJob's status",
            lambda: field("sftj/llama", ".status.phase") not in ("", "Pending"),
            log,
        )
        for ref in ("sa/llama-trainer", "role/llama-trainer", "rolebinding/llama-trainer"):
            assert exists(ref), ref
        assert kubectl("get", "events", "-n", namespace, "-o", "name").stdout.strip()
    refused = refusals(log.read_text())
    assert not refused, "the operator was refused:\n" + "\n".join(refused)


# --- Argo CD health checks ----------------------------------------------------------------


def health_scripts() -> dict[str, str]:
    """The argocd-cm snippet from argocd-health.md, as documented (one yaml block)."""
    text = (CHART / "argocd-health.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    data: dict[str, str] = yaml.safe_load(block)["data"]
    return data


def argocd_health(kind: str, status: Manifest | None) -> tuple[str, str]:
    lupa = pytest.importorskip("lupa", reason="the Lua interpreter (pip install lupa)")
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    obj: Manifest = {"apiVersion": "kubesft.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}}
    if status is not None:
        obj["status"] = status
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(health_scripts()[f"resource.customizations.health.kubesft.io_{kind}"])
    return str(hs["status"]), str(hs["message"])


def failed(condition: str, message: str) -> Manifest:
    return {
        "phase": "Failed",
        "conditions": [
            {"type": "DatasetReady", "status": "True", "message": "ok"},
            {
                "type": condition,
                "status": "True" if condition == "Failed" else "False",
                "message": message,
            },
        ],
    }


@pytest.mark.parametrize(
    ("kind", "status", "health", "message"),
    [
        ("SFTJob", None, "Progressing", "Waiting for the kubesft operator"),
        ("SFTJob", {"phase": "Pending"}, "Progressing", "Pending"),
        ("SFTJob", {"phase": "WaitingForDataset"}, "Progressing", "WaitingForDataset"),
        ("SFTJob", {"phase": "Queued"}, "Progressing", "Queued"),
        ("SFTJob", {"phase": "Running", "progress": {"percent": 40}}, "Progressing", "40%"),
        ("SFTJob", {"phase": "Succeeded", "output": {"path": "/out/run"}}, "Healthy", "/out/run"),
        (
            "SFTJob",
            failed("Failed", "spec.training.maxSeqLength: lower it"),
            "Degraded",
            "spec.training.maxSeqLength: lower it",
        ),
        ("SFTJob", {"phase": "Suspended"}, "Suspended", "Suspended"),
        ("SFTJob", {"phase": "Exploded"}, "Unknown", "Exploded"),
        ("SFTDataset", None, "Progressing", "Waiting for the kubesft operator"),
        ("SFTDataset", {"phase": "Pending"}, "Progressing", "Pending"),
        ("SFTDataset", {"phase": "Validating"}, "Progressing", "Validating"),
        ("SFTDataset", {"phase": "Ready", "stats": {"valid": 9500}}, "Healthy", "9500 valid rows"),
        (
            "SFTDataset",
            failed("Ready", "row 3: messages[0].role must be one of"),
            "Degraded",
            "row 3: messages[0].role must be one of",
        ),
    ],
)
def test_argocd_health_check_maps_phase(
    kind: str, status: Manifest | None, health: str, message: str
) -> None:
    got_health, got_message = argocd_health(kind, status)
    assert got_health == health
    assert message in got_message
