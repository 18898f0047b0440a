"""Reduce raw batch/v1 Jobs and their Pods to the facts status is derived from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Termination:
    """How one container ended."""

    pod: str
    exit_code: int
    reason: str
    message: str
    finished_at: str | None

    @property
    def oom_killed(self) -> bool:
        return self.reason == "OOMKilled"

    def summary(self) -> dict[str, Any] | None:
        """The JSON summary the trainer or `prepare` wrote, if the message is one."""
        try:
            data = json.loads(self.message)
        except (json.JSONDecodeError, TypeError):
            return None
        return data if isinstance(data, dict) else None

    def text(self) -> str:
        """A one-line human message: the summary's message, else the raw text tail."""
        summary = self.summary()
        if summary and summary.get("message"):
            return str(summary["message"])
        lines = [line for line in self.message.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.exit_code} ({self.reason})"


@dataclass(frozen=True)
class ObservedJob:
    """A batch Job and its pods, as far as status needs them."""

    name: str
    suspended: bool
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    conditions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """type → (status, reason, message) of the Job's conditions."""
    start_time: str | None = None
    completion_time: str | None = None
    running_pods: int = 0
    terminations: tuple[Termination, ...] = ()
    """Ended containers, oldest first."""

    def has(self, condition: str) -> bool:
        return self.conditions.get(condition, ("False",))[0] == "True"

    @property
    def complete(self) -> bool:
        return self.has("Complete")

    @property
    def failed_for_good(self) -> bool:
        return self.has("Failed")

    def last_failure(self) -> Termination | None:
        failures = [t for t in self.terminations if t.exit_code != 0]
        return failures[-1] if failures else None

    def last_success(self) -> Termination | None:
        done = [t for t in self.terminations if t.exit_code == 0]
        return done[-1] if done else None


def _terminations(pods: list[dict[str, Any]], container: str) -> list[Termination]:
    out = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") != container or not term:
                continue
            out.append(
                Termination(
                    pod=pod["metadata"]["name"],
                    exit_code=int(term.get("exitCode", 0)),
                    reason=term.get("reason") or "",
                    message=term.get("message") or "",
                    finished_at=term.get("finishedAt"),
                )
            )
    return sorted(out, key=lambda t: t.finished_at or "")


def counts_pods(job: dict[str, Any]) -> bool:
    """Whether the Job's status counts any pod; if not, listing its pods can be skipped.

    Pods the Job controller has just created, and not yet counted, add nothing: the status
    update that counts them is a Job event of its own, which reconciles again.
    """
    status = job.get("status") or {}
    uncounted = status.get("uncountedTerminatedPods") or {}
    return any(status.get(k) for k in ("active", "succeeded", "failed", "terminating")) or any(
        uncounted.values()
    )


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]], container: str) -> ObservedJob:
    """Facts from a Job (as returned by the API, camelCase) and the pods it owns."""
    status = job.get("status") or {}
    conditions = {
        c["type"]: (c.get("status", ""), c.get("reason") or "", c.get("message") or "")
        for c in status.get("conditions") or []
    }
    running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
    return ObservedJob(
        name=job["metadata"]["name"],
        suspended=bool((job.get("spec") or {}).get("suspend")),
        active=int(status.get("active") or 0),
        ready=int(status.get("ready") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        conditions=conditions,
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        running_pods=running,
        terminations=tuple(_terminations(pods, container)),
    )
