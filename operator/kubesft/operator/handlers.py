"""kopf decorators only: each handler hands one object to the Reconciler.

Watching handlers (`on.event`) keep kopf stateless on our objects: no finalizers, no
annotations, no progress records. Every decision is re-derived from what exists, which is
what makes the operator safe to kill and restart at any point.

Event handlers are async and only queue work (see workqueue.py): they return at once, so
kopf holds no backlog of event bodies while reconciles wait for the API server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from kubesft.api.job_status import is_finished
from kubesft.operator import names
from kubesft.operator.job_signals import evaluated_step
from kubesft.operator.reconciler import Reconciler
from kubesft.operator.startup import make_reconciler

MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
log = logging.getLogger("kubesft.operator")


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    reconciler = make_reconciler()
    settings.scanning.disabled = not reconciler.config.cluster_scanning
    reconciler.start()
    memo.reconciler = reconciler
    memo.stop = threading.Event()
    namespaces = memo.get("namespaces") or None
    thread = threading.Thread(
        target=_resync_loop, args=(reconciler, namespaces, memo.stop), daemon=True, name="resync"
    )
    thread.start()


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.stop.set()
    memo.reconciler.stop()


def _resync_loop(
    reconciler: Reconciler, namespaces: list[str] | None, stop: threading.Event
) -> None:
    while not stop.wait(reconciler.config.resync_seconds):
        try:
            reconciler.resync(namespaces)
        except Exception:  # keep the safety net alive whatever one pass hit
            log.exception("resync failed")


@kopf.on.event("kubesft.io", "v1alpha1", "sftdatasets")
async def dataset_changed(
    namespace: str, name: str, meta: kopf.Meta, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    version = (meta.uid, meta.get("generation"), None)
    memo.reconciler.dataset_event(namespace, name, version, type == "DELETED")


@kopf.on.event("kubesft.io", "v1alpha1", "sftjobs")
async def job_changed(
    namespace: str,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    generation = meta.get("generation")
    finished = is_finished(status, generation)
    version = (meta.uid, generation, evaluated_step(status))
    memo.reconciler.job_event(namespace, name, version, finished, type == "DELETED")


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def child_job_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.owner_changed(namespace, labels)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def child_pod_changed(
    namespace: str,
    labels: kopf.Labels,
    uid: str,
    status: kopf.Status,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    memo.reconciler.pod_changed(namespace, labels, uid, status.get("phase"), type == "DELETED")
