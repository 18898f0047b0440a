"""The pieces of a pod status as the kubelet writes them: container states and conditions."""

from __future__ import annotations

from tests.support.node_runner.kube import JSON


def waiting(reason: str, message: str = "") -> JSON:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def running(started_at: str) -> JSON:
    return {"running": {"startedAt": started_at}}


def terminated(
    code: int, reason: str, message: str, started_at: str, finished_at: str, container_id: str
) -> JSON:
    body: JSON = {
        "exitCode": code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
        "containerID": container_id,
    }
    if message:
        body["message"] = message
    return {"terminated": body}


def exit_reason(code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if code == 0 else "Error"


def should_restart(policy: str, code: int, init: bool) -> bool:
    """The kubelet's rule: Always restarts main containers even after success; init
    containers (and OnFailure) restart only after a failure; Never never restarts."""
    if policy == "Never":
        return False
    if policy == "Always" and not init:
        return True
    return code != 0


def condition(kind: str, ok: bool, since: str, reason: str = "", message: str = "") -> JSON:
    """A pod condition; reason and message are null when empty, which a strategic merge
    patch turns into "remove", so that no stale message survives a transition."""
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "lastTransitionTime": since,
        "reason": reason or None,
        "message": message or None,
    }
