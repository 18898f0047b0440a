"""Reduce raw batch/v1 Jobs and their Pods to the facts status is derived from."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubesft.api.report import PrepareTermination, TrainerTermination, parse_termination

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
"""Annotation (and label) of an Indexed Job's pods: the index each one runs."""


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

    def trainer(self) -> TrainerTermination | None:
        """What the trainer wrote as it ended, if the message is its termination message."""
        return parse_termination(self.message, TrainerTermination)

    def prepare(self) -> PrepareTermination | None:
        """What `prepare` wrote as it ended, if the message is its termination message."""
        return parse_termination(self.message, PrepareTermination)

    def text(self) -> str:
        """A one-line human message: the termination message's `message`, else the last
        line of the raw text (a log tail under FallbackToLogsOnError), else the exit."""
        try:
            doc = json.loads(self.message)
        except (json.JSONDecodeError, TypeError):
            doc = None
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
        lines = [line for line in self.message.strip().splitlines() if line.strip()]
        return lines[-1] if lines else self.exit_text()

    def exit_text(self) -> str:
        """`exit code 1 (Error)`: how the container ended."""
        return f"exit code {self.exit_code}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ObservedJob:
    """A batch Job and its pods, as far as status needs them."""

    suspended: bool
    succeeded: int = 0
    failed: int = 0
    conditions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """type → (status, reason, message) of the Job's conditions."""
    start_time: str | None = None
    completion_time: str | None = None
    running_pods: int = 0
    terminations: tuple[Termination, ...] = ()
    """Ended containers, oldest first."""
    restarts: int | None = None
    """Pods started again for a completion index that had one already (a retry after a
    failure or an eviction); None when the pods were not listed."""
    image: str | None = None
    """The trainer image as the node resolved it (containerStatuses imageID, a digest),
    else as the pod spec names it; None when no pod was listed."""

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


def _restarts(pods: list[dict[str, Any]]) -> int:
    """Pods beyond the first of each completion index (a non-Indexed Job: one index)."""
    per_index = Counter(
        ((p.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX, "") for p in pods
    )
    return sum(count - 1 for count in per_index.values())


def _image(pods: list[dict[str, Any]], container: str) -> str | None:
    """The newest pod's image of `container`: its imageID once the node pulled it."""
    newest = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    for pod in reversed(newest):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") == container and (cs.get("imageID") or cs.get("image")):
                return str(cs.get("imageID") or cs.get("image"))
        for spec in (pod.get("spec") or {}).get("containers") or []:
            if spec.get("name") == container and spec.get("image"):
                return str(spec["image"])
    return None


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
        suspended=bool((job.get("spec") or {}).get("suspend")),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        conditions=conditions,
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        running_pods=running,
        terminations=tuple(_terminations(pods, container)),
        restarts=_restarts(pods) if pods else None,
        image=_image(pods, container),
    )
