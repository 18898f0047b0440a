"""Thin, explicit access to the objects the operator reads and writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesft.api import GROUP, VERSION

log = logging.getLogger("kubesft.operator")

Manifest = dict[str, Any]


class CreateFailed(ApiException):  # type: ignore[misc]  # untyped client
    """Creating a child failed; names the object and carries the apiserver's message."""

    verb = "could not create"

    def __init__(self, err: ApiException, kind: str, namespace: str, name: str) -> None:
        super().__init__(status=err.status, reason=err.reason)
        self.body = err.body
        self.kind, self.namespace, self.name = kind, namespace, name
        self.message = api_message(err)

    def __str__(self) -> str:
        return f"the apiserver {self.verb} {self.kind} {self.namespace}/{self.name}: {self.message}"


class RejectedObject(CreateFailed):
    """The apiserver refused the object as built (400/422: invalid, or denied by an
    admission policy); retrying the same object cannot succeed."""

    verb = "refused"


def api_message(err: ApiException) -> str:
    """The apiserver's own explanation from an error response (its Status.message)."""
    try:
        message = json.loads(err.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or err.reason or err.status)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """The API calls kubesft makes, each named for what it does; objects are plain dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        # Independent writes of one reconcile overlap (`ensure_all`); shared by all workers.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kube")
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @staticmethod
    def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Manifest:
        """The response body as plain JSON. The client's typed models are skipped on
        purpose (here and for writes whose response is unused, `_preload_content=False`):
        building them and dumping them back to dicts cost more CPU than the whole rest of
        a reconcile. Non-2xx responses still raise ApiException."""
        resp = call(*args, _preload_content=False, **kwargs)
        out: Manifest = json.loads(resp.data)
        return out

    def _ops(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        table: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ConfigMap": (
                self.core.create_namespaced_config_map,
                self.core.read_namespaced_config_map,
            ),
            "Service": (self.core.create_namespaced_service, self.core.read_namespaced_service),
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.read_namespaced_service_account,
            ),
            "Role": (self.rbac.create_namespaced_role, self.rbac.read_namespaced_role),
            "RoleBinding": (
                self.rbac.create_namespaced_role_binding,
                self.rbac.read_namespaced_role_binding,
            ),
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job),
        }
        return table[kind]

    def ensure(self, manifest: Manifest) -> Manifest:
        """Create the object, or return the existing one of that name (never duplicate).

        Raises RejectedObject when the apiserver refuses the object itself (400, 422),
        CreateFailed for any other error but a conflict.
        """
        create, read = self._ops(manifest["kind"])
        meta = manifest["metadata"]
        try:
            return self._json(create, meta["namespace"], manifest)
        except ApiException as err:
            kind, ns, name = manifest["kind"], meta["namespace"], meta["name"]
            if err.status in (400, 422):
                raise RejectedObject(err, kind, ns, name) from None
            if err.status != 409:
                raise CreateFailed(err, kind, ns, name) from None
        return self._json(read, meta["name"], meta["namespace"])

    def ensure_all(self, manifests: Sequence[Manifest]) -> list[Manifest]:
        """`ensure` for objects that do not depend on each other, at once, in order."""
        if len(manifests) < 2:
            return [self.ensure(m) for m in manifests]
        return list(self._pool.map(self.ensure, manifests))

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        _, read = self._ops(kind)
        try:
            return self._json(read, name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def job_pods(self, namespace: str, job_name: str) -> list[Manifest]:
        pods = self._json(
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job_name}",
        )
        items: list[Manifest] = pods.get("items") or []
        return items

    def patch_job(self, namespace: str, name: str, patch: Manifest) -> None:
        self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False)

    def set_owner(self, kind: str, namespace: str, name: str, owner: Manifest) -> None:
        body = {"metadata": {"ownerReferences": [owner]}}
        if kind == "ConfigMap":  # a merge patch replaces the list (strategic would append)
            self.core.patch_namespaced_config_map(
                name,
                namespace,
                body,
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        else:
            raise ValueError(f"re-parenting {kind} is not supported")

    # Custom resources -------------------------------------------------------------

    def get_custom(self, plural: str, namespace: str, name: str) -> Manifest | None:
        try:
            return self._json(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list_custom(self, plural: str, namespace: str | None) -> list[Manifest]:
        if namespace:
            res = self._json(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural
            )
        else:
            res = self._json(self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
        items: list[Manifest] = res.get("items") or []
        return items

    def patch_status(self, plural: str, namespace: str, name: str, status: Manifest) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}, _preload_content=False
        )

    def event(self, obj: Manifest, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on a kubesft object (`kubectl describe` shows it)."""
        meta = obj["metadata"]
        now = datetime.now(timezone.utc).isoformat()
        body: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "kubesft-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        except ApiException as err:  # events are best effort
            log.warning("could not record event %s on %s: %s", reason, meta["name"], err.reason)
