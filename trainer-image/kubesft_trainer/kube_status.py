"""The trainer's only Kubernetes contact: progress written onto its own SFTJob's status.

The pod's service account may `get`/`patch` `sftjobs/status` of this one SFTJob and
nothing else (a Role with resourceNames, made by the operator). Plain HTTPS with the
projected token keeps the trainer image free of a Kubernetes client library.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from kubesft.api.report import TrainerReport

ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP_VERSION = "kubesft.io/v1alpha1"


class KubeStatusSink:
    """`sinks.ProgressSink` that merge-patches the report into `SFTJob.status`."""

    def __init__(
        self,
        namespace: str,
        name: str,
        server: str,
        token_path: Path = ACCOUNT_DIR / "token",
        ca_path: Path = ACCOUNT_DIR / "ca.crt",
        timeout_s: float = 10.0,
    ) -> None:
        self.url = f"{server}/apis/{GROUP_VERSION}/namespaces/{namespace}/sftjobs/{name}/status"
        self.token_path = token_path
        self.context = ssl.create_default_context(cafile=str(ca_path))
        self.timeout_s = timeout_s

    @classmethod
    def from_environment(cls, namespace: str, name: str) -> KubeStatusSink | None:
        """The in-cluster sink when running in a pod with a token, else None."""
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
        )
        if not (host and namespace and name and (ACCOUNT_DIR / "token").is_file()):
            return None
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        return cls(namespace, name, server)

    def send(self, report: TrainerReport) -> None:
        # Only the trainer's own fields: phase and conditions belong to the operator.
        body = json.dumps({"status": report.status_fields()}).encode()
        request = urllib.request.Request(self.url, data=body, method="PATCH")
        request.add_header("Content-Type", "application/merge-patch+json")
        # Projected tokens rotate: read the file on every call, as client libraries do.
        request.add_header("Authorization", f"Bearer {self.token_path.read_text().strip()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context):
                pass
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise RuntimeError(f"status update refused: HTTP {err.code}: {detail}") from None
