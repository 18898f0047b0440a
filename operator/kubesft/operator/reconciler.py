"""Decides which events need a reconcile, queues them, runs them, keeps metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubesft.api import SFT_DATASET, SFT_JOB, InvalidSpec
from kubesft.api.job_status import is_finished
from kubesft.operator import names
from kubesft.operator.config import OperatorConfig
from kubesft.operator.dataset_readiness import names_read
from kubesft.operator.dataset_source import follows_source
from kubesft.operator.kube import Kube, now_rfc3339
from kubesft.operator.metrics import RECONCILE_SECONDS, RECONCILES, PhaseBook
from kubesft.operator.reconcile_dataset import reconcile_dataset
from kubesft.operator.reconcile_job import reconcile_job
from kubesft.operator.workqueue import WorkQueue

log = logging.getLogger("kubesft.operator")
Reconcile = Callable[[Kube, OperatorConfig, str, str], "str | None"]


Key = tuple[str, str, str]  # kind, namespace, name
Version = tuple[str, "int | None", "int | None"]
"""uid, metadata.generation (which spec of which object) and, for an SFTJob, the step of
the latest evaluation its trainer reported (`job_signals.evaluated_step`)."""
WORKERS = 8
"""Reconciles running at once; each mostly waits for the API server."""


class Reconciler:
    """Handlers and the resync hand it objects to reconcile; a work queue runs them.

    The queue runs one reconcile at a time per object (a child event and a resync never
    race on one SFTJob) and folds repeated triggers for an object into one reconcile.

    Events of an SFTJob or SFTDataset whose spec version (uid, generation) a reconcile
    has already covered are skipped: without a new generation only status and metadata
    changed, i.e. our own status writes and the trainer's progress reports, and no
    decision depends on those (children announce their changes with their own events);
    but a new evaluation is part of an SFTJob's version, since the Overfitting and
    Forgetting conditions are derived from it.
    """

    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.queue: WorkQueue[Key] = WorkQueue(self._process, WORKERS)
        self._reconciled_at: dict[Key, float] = {}  # monotonic time of the last success
        self._announced: dict[Key, Version] = {}  # newest version events asked for
        self._covered: dict[Key, Version] = {}  # version the latest reconcile read (or newer)
        self._guard = threading.Lock()
        self._pod_phases: dict[str, str | None] = {}  # by pod uid
        self.phases = {
            SFT_JOB.kind: PhaseBook(SFT_JOB.kind),
            SFT_DATASET.kind: PhaseBook(SFT_DATASET.kind),
        }

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()

    def enqueue(self, kind: str, namespace: str, name: str) -> None:
        """Reconcile this SFTJob or SFTDataset soon (once, however often it is asked)."""
        self.queue.add((kind, namespace, name))

    def _announce(self, key: Key, version: Version) -> None:
        with self._guard:
            if self._covered.get(key) == version:
                return
            self._announced[key] = version
        self.queue.add(key, urgent=True)  # a new object or spec: ahead of status mirroring

    def _process(self, key: Key) -> None:
        kind, namespace, name = key
        with self._guard:  # this reconcile reads the object after every announcement so far
            version = self._announced.pop(key, None)
            if version is not None:
                self._covered[key] = version
        reconcile = self.job if kind == SFT_JOB.kind else self.dataset
        reconcile(namespace, name)

    def _run(self, kind: str, fn: Reconcile, namespace: str, name: str) -> str | None:
        """Reconcile one object now; None when it is gone or failed. Called by the queue."""
        key = (kind, namespace, name)
        started = time.perf_counter()
        result = "ok"
        phase: str | None = None
        try:
            phase = fn(self.kube, self.config, namespace, name)
            self.phases[kind].record(namespace, name, phase)
            if phase is None:
                self._reconciled_at.pop(key, None)
            else:
                self._reconciled_at[key] = time.monotonic()
            return phase
        except InvalidSpec as err:
            result = "invalid"
            log.error("%s %s/%s is invalid: %s", kind, namespace, name, err)
            self._report_invalid(kind, namespace, name, err)
        except ApiException as err:
            result = "error"
            with self._guard:  # let the next event retry, whatever its version
                self._covered.pop(key, None)
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

    def _report_invalid(self, kind: str, namespace: str, name: str, err: InvalidSpec) -> None:
        """A spec the models reject (e.g. written under an older CRD): say so on the object."""
        plural = SFT_JOB.plural if kind == SFT_JOB.kind else SFT_DATASET.plural
        raw = self.kube.get_custom(plural, namespace, name)
        if raw is None:
            return
        generation = raw["metadata"].get("generation")
        failed = kind == SFT_JOB.kind
        condition = {
            "type": "Failed" if failed else "Ready",
            "status": "True" if failed else "False",
            "reason": "InvalidSpec",
            "message": f"{err}: fix the spec and apply it again",
            "lastTransitionTime": now_rfc3339(),
            "observedGeneration": generation,
        }
        status = {"phase": "Failed", "conditions": [condition], "observedGeneration": generation}
        self.kube.patch_status(plural, namespace, name, status)
        # The Event says what the condition says (one message for `describe` and status).
        self.kube.event(raw, "Warning", "InvalidSpec", condition["message"])

    def job(self, namespace: str, name: str) -> str | None:
        return self._run(SFT_JOB.kind, reconcile_job, namespace, name)

    def dataset(self, namespace: str, name: str) -> str | None:
        before = self.phases[SFT_DATASET.kind].get(namespace, name)
        phase = self._run(SFT_DATASET.kind, reconcile_dataset, namespace, name)
        if phase in ("Ready", "Failed") and phase != before:
            # Only on a change (or first sight): SFTJobs created later find the dataset
            # finished on their own first reconcile, so listing every SFTJob again on each
            # later dataset event would find nothing to do.
            self.jobs_using(namespace, name)
        return phase

    def job_event(
        self, namespace: str, name: str, version: Version, finished: bool, gone: bool
    ) -> None:
        """An SFTJob event; a finished SFTJob (`job_status.is_finished`) is never
        reconciled again (nor even read)."""
        if gone:
            self._forget((SFT_JOB.kind, namespace, name))
        elif not finished:
            self._announce((SFT_JOB.kind, namespace, name), version)

    def dataset_event(self, namespace: str, name: str, version: Version, gone: bool) -> None:
        if gone:
            self._forget((SFT_DATASET.kind, namespace, name))
        else:
            self._announce((SFT_DATASET.kind, namespace, name), version)

    def _forget(self, key: Key) -> None:
        """A deleted resource: drop what is remembered about it."""
        kind, namespace, name = key
        self.phases[kind].record(namespace, name, None)
        with self._guard:
            for memory in (self._reconciled_at, self._announced, self._covered):
                memory.pop(key, None)

    def owner_changed(self, namespace: str, labels: Mapping[str, str]) -> None:
        """A child (Job or pod) changed: reconcile the SFTJob or SFTDataset it belongs to."""
        if names.LABEL_JOB in labels:
            self.enqueue(SFT_JOB.kind, namespace, labels[names.LABEL_JOB])
        elif names.LABEL_DATASET in labels:
            self.enqueue(SFT_DATASET.kind, namespace, labels[names.LABEL_DATASET])

    def pod_changed(
        self, namespace: str, labels: Mapping[str, str], uid: str, phase: str | None, gone: bool
    ) -> None:
        """A child pod changed. Only a new phase can change its owner's status: the pod's
        other updates (binding, conditions, finalizers, deletion) show in its Job's status,
        whose events reconcile too. Skipping them saves most pod-triggered reconciles."""
        with self._guard:
            if gone:
                self._pod_phases.pop(uid, None)
                return
            if uid in self._pod_phases and self._pod_phases[uid] == phase:
                return
            self._pod_phases[uid] = phase
        self.owner_changed(namespace, labels)

    def jobs_using(self, namespace: str, dataset: str) -> None:
        """A dataset changed: the waiting SFTJobs that read it (a member or the retention
        set) may move on."""
        for obj in self.kube.list_custom(SFT_JOB.plural, namespace):
            waiting = (obj.get("status") or {}).get("phase") in (
                None,
                "Pending",
                "WaitingForDataset",
            )
            if waiting and dataset in names_read(obj):
                self.enqueue(SFT_JOB.kind, namespace, obj["metadata"]["name"])

    def _stale(self, kind: str, obj: dict[str, Any], now: float) -> bool:
        """Not reconciled successfully for a whole resync period."""
        meta = obj["metadata"]
        at = self._reconciled_at.get((kind, meta["namespace"], meta["name"]))
        return at is None or now - at >= self.config.resync_seconds

    def resync(self, namespaces: list[str] | None) -> None:
        """Queue every unfinished resource: the safety net when an event was missed; and
        SFTDatasets whose ConfigMap source may have changed (no event tells).

        Resources that events reconciled within the last period are left out: an event
        missed after that reconcile is caught by the next pass (at most two periods late).
        """
        now = time.monotonic()
        for ns in namespaces or [None]:  # type: ignore[list-item]
            for obj in self.kube.list_custom(SFT_DATASET.plural, ns):
                phase = (obj.get("status") or {}).get("phase")
                settled = phase in ("Ready", "Failed") and not follows_source(obj)
                if not settled and self._stale(SFT_DATASET.kind, obj, now):
                    self.enqueue(
                        SFT_DATASET.kind, obj["metadata"]["namespace"], obj["metadata"]["name"]
                    )
            for obj in self.kube.list_custom(SFT_JOB.plural, ns):
                finished = is_finished(obj.get("status"), obj["metadata"].get("generation"))
                if not finished and self._stale(SFT_JOB.kind, obj, now):
                    self.enqueue(
                        SFT_JOB.kind, obj["metadata"]["namespace"], obj["metadata"]["name"]
                    )
