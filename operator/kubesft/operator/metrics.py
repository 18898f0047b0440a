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
    """The last known phase of each resource, exported as counts per phase."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._phases: dict[tuple[str, str], str] = {}
        self._seen: set[str] = set()

    def record(self, namespace: str, name: str, phase: str | None) -> None:
        key = (namespace, name)
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        counts: dict[str, int] = {}
        for p in self._phases.values():
            counts[p] = counts.get(p, 0) + 1
        for p in {*counts, *self._seen}:
            RESOURCES.labels(self.kind, p).set(counts.get(p, 0))
        self._seen.update(counts)
