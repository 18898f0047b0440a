"""Prometheus metrics of the operator: what it manages and how reconciling goes."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kubesft_reconcile_total", "Reconciles by resource kind and result", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "kubesft_reconcile_duration_seconds",
    "Time to reconcile one resource",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RESOURCES = Gauge("kubesft_resources", "Managed resources by kind and phase", ["kind", "phase"])


class PhaseBook:
    """The last known phase of each resource, exported as counts per phase.

    Counts are kept up to date per change (not recounted), so recording costs the same
    with ten resources or ten thousand.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def get(self, namespace: str, name: str) -> str | None:
        return self._phases.get((namespace, name))

    def record(self, namespace: str, name: str, phase: str | None) -> None:
        key = (namespace, name)
        old = self._phases.pop(key, None) if phase is None else self._phases.get(key)
        if phase is not None:
            self._phases[key] = phase
        if old == phase:
            return
        for p, step in ((old, -1), (phase, 1)):
            if p is not None:
                self._counts[p] = self._counts.get(p, 0) + step
                RESOURCES.labels(self.kind, p).set(self._counts[p])
