"""Runs reconciles one at a time per resource and keeps metrics; shared by all handlers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from kubesft.api import SFT_DATASET, SFT_JOB, InvalidSpec
from kubesft.api.job_status import TERMINAL_PHASES
from kubesft.operator.config import OperatorConfig
from kubesft.operator.kube import Kube
from kubesft.operator.metrics import RECONCILE_SECONDS, RECONCILES, PhaseBook
from kubesft.operator.reconcile_dataset import reconcile_dataset
from kubesft.operator.reconcile_job import reconcile_job

log = logging.getLogger("kubesft.operator")
Reconcile = Callable[[Kube, OperatorConfig, str, str], "str | None"]


class Reconciler:
    """Serializes work per object: a child event and a resync never race on one SFTJob."""

    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.phases = {
            SFT_JOB.kind: PhaseBook(SFT_JOB.kind),
            SFT_DATASET.kind: PhaseBook(SFT_DATASET.kind),
        }

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _run(self, kind: str, fn: Reconcile, namespace: str, name: str) -> str | None:
        started = time.perf_counter()
        result = "ok"
        phase: str | None = None
        try:
            with self._lock((kind, namespace, name)):
                phase = fn(self.kube, self.config, namespace, name)
            self.phases[kind].record(namespace, name, phase)
            return phase
        except InvalidSpec as err:
            result = "invalid"
            log.error("%s %s/%s is invalid: %s", kind, namespace, name, err)
        except ApiException as err:
            result = "error"
            if err.status == 409:  # a concurrent write won; the next event converges
                log.info("%s %s/%s: conflict, retrying on the next event", kind, namespace, name)
            else:
                log.warning(
                    "%s %s/%s: API error %s %s", kind, namespace, name, err.status, err.reason
                )
        finally:
            RECONCILES.labels(kind, result).inc()
            RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return None

    def job(self, namespace: str, name: str) -> str | None:
        return self._run(SFT_JOB.kind, reconcile_job, namespace, name)

    def dataset(self, namespace: str, name: str) -> str | None:
        phase = self._run(SFT_DATASET.kind, reconcile_dataset, namespace, name)
        if phase in ("Ready", "Failed"):
            self.jobs_using(namespace, name)
        return phase

    def jobs_using(self, namespace: str, dataset: str) -> None:
        """A dataset changed: its waiting SFTJobs may move on."""
        for obj in self.kube.list_custom(SFT_JOB.plural, namespace):
            waiting = (obj.get("status") or {}).get("phase") in (
                None,
                "Pending",
                "WaitingForDataset",
            )
            if obj.get("spec", {}).get("dataset", {}).get("name") == dataset and waiting:
                self.job(namespace, obj["metadata"]["name"])

    def resync(self, namespaces: list[str] | None) -> None:
        """Reconcile every unfinished resource: the safety net when an event was missed."""
        for ns in namespaces or [None]:  # type: ignore[list-item]
            for obj in self.kube.list_custom(SFT_DATASET.plural, ns):
                if (obj.get("status") or {}).get("phase") not in ("Ready", "Failed"):
                    self.dataset(obj["metadata"]["namespace"], obj["metadata"]["name"])
            for obj in self.kube.list_custom(SFT_JOB.plural, ns):
                if (obj.get("status") or {}).get("phase") not in TERMINAL_PHASES:
                    self.job(obj["metadata"]["namespace"], obj["metadata"]["name"])
