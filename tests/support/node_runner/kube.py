"""The runner's view of the apiserver: JSON in, JSON out, through the official client.

Objects stay plain dicts exactly as the apiserver serialises them, so that field paths from
pod specs (``metadata.labels['app']``) resolve against the shape a kubelet sees, and no
client model can drop a field it does not know.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

JSON = dict[str, Any]
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


# The client's type hints describe deserialised models; every call here is raw
# (_preload_content=False, dict bodies), which they do not model, so they are typed Any.
_new_client: Any = config.new_client_from_config
_parse_quantity: Any = parse_quantity


def quantity(value: str | int) -> Decimal:
    """A resource quantity ("500m", "2Gi", 8) as a number."""
    return Decimal(_parse_quantity(value))


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch again."""


@dataclass(frozen=True)
class ClusterAccess:
    """Where in-pod clients reach the apiserver, and the CA that they must trust."""

    server: str
    host: str
    port: int
    ca_pem: bytes


def read_cluster_access(kubeconfig: str) -> ClusterAccess:
    """The current context's server URL and CA, from a kubeconfig file."""
    path = Path(kubeconfig)
    doc = yaml.safe_load(path.read_text())
    context_name = doc.get("current-context")
    contexts = {c["name"]: c["context"] for c in doc.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in doc.get("clusters", [])}
    context = contexts.get(context_name) or next(iter(contexts.values()))
    cluster = clusters[context["cluster"]]
    if "certificate-authority-data" in cluster:
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        ca_pem = (path.parent / cluster["certificate-authority"]).read_bytes()
    else:
        ca_pem = b""
    url = urlsplit(cluster["server"])
    return ClusterAccess(cluster["server"], url.hostname or "127.0.0.1", url.port or 443, ca_pem)


def now_rfc3339() -> str:
    """The current time as Kubernetes writes metav1.Time: whole seconds, UTC."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as metav1.MicroTime (Lease renewTime): always six fraction digits."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(resp: Any) -> JSON:
    try:
        data: JSON = json.loads(resp.data)
        return data
    finally:
        resp.release_conn()


def is_status(err: BaseException, *codes: int) -> bool:
    """True when ``err`` is an API error with one of the HTTP ``codes``."""
    return isinstance(err, ApiException) and err.status in codes


class Kube:
    """The handful of API calls a kubelet and a scheduler make, on one connection pool."""

    def __init__(self, kubeconfig: str) -> None:
        self.api: Any = _new_client(config_file=kubeconfig)
        self.core: Any = client.CoreV1Api(self.api)
        self.coordination: Any = client.CoordinationV1Api(self.api)
        self._watch: Any = None

    def interrupt_watch(self) -> None:
        """End a ``watch_pods`` blocked in another thread now (urllib3 >= 2.3), not at timeout."""
        watch = self._watch
        if watch is not None and hasattr(watch, "shutdown"):
            watch.shutdown()

    def close(self) -> None:
        self.api.close()

    # -- pods

    def list_pods(self) -> tuple[list[JSON], str]:
        """Every pod in the cluster, and the resourceVersion to watch from."""
        body = _read(self.core.list_pod_for_all_namespaces(_preload_content=False))
        return body["items"], body["metadata"]["resourceVersion"]

    def watch_pods(self, resource_version: str, timeout: int) -> Iterator[tuple[str, JSON]]:
        """Pod events after ``resource_version`` for up to ``timeout`` seconds.

        Read line by line here rather than through ``kubernetes.watch``, whose raw mode
        cannot report a 410 as such; WatchExpired tells the caller to list again.
        """
        resp = self.core.list_pod_for_all_namespaces(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=timeout + 10,
        )
        self._watch = resp
        try:
            for line in resp:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    if status.get("code") == 410:
                        raise WatchExpired(status.get("message", "410 Gone"))
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                yield event["type"], event["object"]
        finally:
            self._watch = None
            resp.release_conn()

    def bind_pod(self, namespace: str, name: str, node: str) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # Raw: the client cannot deserialise the Status object that a Binding returns.
        _read(
            self.core.create_namespaced_pod_binding(
                name, namespace, binding, _preload_content=False
            )
        )

    def patch_pod_status(self, namespace: str, name: str, status: JSON) -> None:
        resp = self.core.patch_namespaced_pod_status(
            name,
            namespace,
            {"status": status},
            _content_type=STRATEGIC_MERGE,
            _preload_content=False,
        )
        _read(resp)

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete with grace 0, as the kubelet does once the containers are gone."""
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            _read(
                self.core.delete_namespaced_pod(
                    name, namespace, body=options, _preload_content=False
                )
            )
        except ApiException as err:
            if err.status not in (404, 409):  # already gone, or a new pod of the same name
                raise

    # -- what pods refer to

    def read_config_map(self, namespace: str, name: str) -> JSON | None:
        try:
            return _read(
                self.core.read_namespaced_config_map(name, namespace, _preload_content=False)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def read_secret(self, namespace: str, name: str) -> JSON | None:
        try:
            return _read(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def read_service_account(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = self.core.read_namespaced_service_account(
                name, namespace, _preload_content=False
            )
            return _read(resp)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def request_token(self, pod: JSON, audiences: list[str], expiration_seconds: int) -> str:
        """A service-account token for ``pod``'s account, bound to the pod (dies with it)."""
        meta = pod["metadata"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        account = pod["spec"].get("serviceAccountName") or "default"
        resp = self.core.create_namespaced_service_account_token(
            account, meta["namespace"], request, _preload_content=False
        )
        token: str = _read(resp)["status"]["token"]
        return token

    # -- the node

    def create_or_update_node(self, node: JSON) -> JSON:
        try:
            return _read(self.core.create_node(node, _preload_content=False))
        except ApiException as err:
            if err.status != 409:
                raise
        patch = {"metadata": {"labels": node["metadata"]["labels"]}, "spec": node["spec"]}
        name = node["metadata"]["name"]
        return _read(self.core.patch_node(name, patch, _content_type=MERGE, _preload_content=False))

    def patch_node_status(self, name: str, status: JSON) -> None:
        resp = self.core.patch_node_status(
            name, {"status": status}, _content_type=STRATEGIC_MERGE, _preload_content=False
        )
        _read(resp)

    def delete_node(self, name: str) -> None:
        try:
            _read(self.core.delete_node(name, _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise

    def renew_lease(self, node: JSON, duration_seconds: int) -> None:
        """Create or renew the node's Lease in kube-node-lease (the lightweight heartbeat)."""
        name, namespace = node["metadata"]["name"], "kube-node-lease"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": now_micro(),
        }
        try:
            resp = self.coordination.patch_namespaced_lease(
                name, namespace, {"spec": spec}, _content_type=MERGE, _preload_content=False
            )
            _read(resp)
            return
        except ApiException as err:
            if err.status != 404:
                raise
        owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
            "spec": spec,
        }
        _read(self.coordination.create_namespaced_lease(namespace, lease, _preload_content=False))
