"""The cluster side of `operator_scale.py`: a local control plane whose API requests can be
counted, per client, and a node whose trainer containers exit at once.

- kube-apiserver, etcd and kube-controller-manager from `tests.support.controlplane`; the
  apiserver additionally writes an audit log of the requests of one user, the operator
  (its own client certificate, CN `kubesft-operator`), so requests are attributed exactly
  rather than guessed from `apiserver_request_total` (which has no client label);
- `apiserver_request_total` scraped from `/metrics` for the totals of every client
  (operator, kube-controller-manager, node runner, this benchmark);
- the node runner (the kubelet stand-in) runs every `trainer` container as
  `sh -c 'printf ... > /dev/termination-log'`: no training, a valid final summary.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import controlplane as cp_module
from tests.support.controlplane import ControlPlane, generate_pki, write_kubeconfig

OPERATOR_USER = "kubesft-operator"
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  users: ["{OPERATOR_USER}"]
- level: None
"""
KCM_QPS = int(os.environ.get("KCM_QPS", "0"))
AUDIT_VERBS = {
    "create": "POST",
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "patch": "PATCH",
    "update": "PUT",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}
WRITE_VERBS = ("POST", "PATCH", "PUT", "DELETE", "APPLY")
FAKE_SUMMARY = json.dumps(
    {
        "progress": {"step": 1, "totalSteps": 1, "percent": 100},
        "metrics": {"trainLoss": 1.0, "evalLoss": 1.0},
        "output": {"path": "/output/model", "kind": "adapter"},
    }
)
_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class AuditedControlPlane(ControlPlane):
    """ControlPlane whose kube-apiserver also audits the operator user's requests.

    ``KCM_QPS`` raises kube-controller-manager's client rate limit (default 20/s, burst
    30): at that limit the Job controller, not the operator, sets the pace of the loop.
    """

    @property
    def audit_log(self) -> Path:
        return Path(self.state_dir) / "audit.log"

    def _spawn(self, name: str, args: list[str], health_url: str, timeout: float) -> None:
        if name == "kube-apiserver":
            policy = Path(self.state_dir) / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            args = [
                *args,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=0",  # never rotate: one run's log is read whole
            ]
        if name == "kube-controller-manager" and KCM_QPS:
            args = [*args, f"--kube-api-qps={KCM_QPS}", f"--kube-api-burst={2 * KCM_QPS}"]
        super()._spawn(name, args, health_url, timeout)


def _issue_operator_identity(cp: ControlPlane) -> Path:
    """A client certificate (system:masters, as in the e2e tests) and kubeconfig of its own."""
    pki = cp.pki
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = cp_module._name(OPERATOR_USER, "system:masters")
    cert = cp_module._issue(subject, key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    (pki / "operator.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cp_module._write_private(pki / "operator.key", key)
    path = Path(cp.state_dir) / "operator.kubeconfig"
    write_kubeconfig(path, cp.server, pki, "operator")
    return path


def start_cluster(crds: Path) -> tuple[AuditedControlPlane, Path]:
    """etcd + audited kube-apiserver + kube-controller-manager, CRDs installed.

    Mirrors `start_control_plane`, with the apiserver started by the subclass above.
    Returns the control plane and the operator's kubeconfig.
    """
    state = Path(tempfile.mkdtemp(prefix="kubesft-bench-"))
    cp = AuditedControlPlane(bin_dir=str(cp_module.build_binaries()), state_dir=str(state))
    try:
        generate_pki(cp.pki)
        etcd = cp._start_etcd(60)
        cp._start_apiserver(etcd, 60)
        write_kubeconfig(cp.kubeconfig, cp.server, cp.pki, "admin")
        cp.start_controller_manager()
        operator_kubeconfig = _issue_operator_identity(cp)
        kubectl = [cp.binary("kubectl"), f"--kubeconfig={cp.kubeconfig}"]
        subprocess.run([*kubectl, "apply", "--server-side", "-f", str(crds)], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd", "--all"], check=True, capture_output=True)  # fmt: skip
    except BaseException:
        cp.stop(keep=True)
        raise
    return cp, operator_kubeconfig


def fast_trainer(pod: dict[str, Any], container: dict[str, Any]) -> list[str] | None:
    """NodeRunner command_override: trainer containers write a summary and exit 0."""
    if container["name"] != "trainer":
        return None
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    return ["sh", "-c", 'printf %s "$1" > "$0"', path, FAKE_SUMMARY]


# --- counting requests ------------------------------------------------------------------


def request_totals(cp: ControlPlane) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource]), all clients."""
    ctx = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
    ctx.load_cert_chain(str(cp.pki / "admin.crt"), str(cp.pki / "admin.key"))
    with urllib.request.urlopen(f"{cp.server}/metrics", context=ctx, timeout=30) as resp:
        text = resp.read().decode()
    totals: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        totals[(labels.get("verb", ""), resource)] += int(float(match["value"]))
    return totals


def audit_offset(cp: AuditedControlPlane) -> int:
    return cp.audit_log.stat().st_size if cp.audit_log.exists() else 0


def operator_requests(cp: AuditedControlPlane, since: int) -> Counter[tuple[str, str]]:
    """The operator's requests after byte ``since`` of the audit log, by (verb, resource)."""
    counts: Counter[tuple[str, str]] = Counter()
    with cp.audit_log.open("rb") as log:
        log.seek(since)
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            counts[(AUDIT_VERBS.get(event["verb"], event["verb"].upper()), resource)] += 1
    return counts


def per_job(counts: Counter[tuple[str, str]], jobs: int) -> dict[str, Any]:
    """Requests per SFTJob: by verb, writes/reads split, and the detail by resource."""
    by_verb: Counter[str] = Counter()
    for (verb, _), value in counts.items():
        by_verb[verb] += value
    writes = sum(v for k, v in by_verb.items() if k in WRITE_VERBS)
    detail = {
        f"{verb} {resource}": round(value / jobs, 3)
        for (verb, resource), value in sorted(counts.items(), key=lambda kv: -kv[1])
        if value
    }
    return {
        "total": round(sum(by_verb.values()) / jobs, 2),
        "writes": round(writes / jobs, 2),
        "reads": round((sum(by_verb.values()) - writes) / jobs, 2),
        "by_verb": {k: round(v / jobs, 2) for k, v in sorted(by_verb.items())},
        "by_resource": detail,
    }


def delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[Any]:
    out: Counter[tuple[str, str]] = Counter()
    for key, value in after.items():
        if value - before.get(key, 0) > 0:
            out[key] = value - before.get(key, 0)
    return out
