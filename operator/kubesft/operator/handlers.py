"""kopf decorators only: each handler hands one object to the Reconciler.

Watching handlers (`on.event`) keep kopf stateless on our objects: no finalizers, no
annotations, no progress records. Every decision is re-derived from what exists, which is
what makes the operator safe to kill and restart at any point.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from kubesft.operator import names
from kubesft.operator.reconciler import Reconciler
from kubesft.operator.startup import make_reconciler

MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
log = logging.getLogger("kubesft.operator")


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    reconciler = make_reconciler()
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


def _resync_loop(
    reconciler: Reconciler, namespaces: list[str] | None, stop: threading.Event
) -> None:
    while not stop.wait(reconciler.config.resync_seconds):
        try:
            reconciler.resync(namespaces)
        except Exception:  # keep the safety net alive whatever one pass hit
            log.exception("resync failed")


@kopf.on.event("kubesft.io", "v1alpha1", "sftdatasets")
def dataset_changed(namespace: str, name: str, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED":
        memo.reconciler.dataset(namespace, name)


@kopf.on.event("kubesft.io", "v1alpha1", "sftjobs")
def job_changed(namespace: str, name: str, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED":
        memo.reconciler.job(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def child_job_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    _owner_changed(memo.reconciler, namespace, labels)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def child_pod_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    _owner_changed(memo.reconciler, namespace, labels)


def _owner_changed(reconciler: Reconciler, namespace: str, labels: kopf.Labels) -> None:
    if names.LABEL_JOB in labels:
        reconciler.job(namespace, labels[names.LABEL_JOB])
    elif names.LABEL_DATASET in labels:
        reconciler.dataset(namespace, labels[names.LABEL_DATASET])
