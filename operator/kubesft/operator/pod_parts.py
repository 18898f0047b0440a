"""Pieces of pod specs shared by the preparation and trainer Jobs."""

from __future__ import annotations

from typing import Any

from kubesft.api.base import PVCLocation, SecretKeyRef, SecretRef

CONFIG_DIR = "/etc/kubesft"
TERMINATION_LOG = "/dev/termination-log"

AWS_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),
    ("AWS_ENDPOINT_URL", True),
    ("AWS_DEFAULT_REGION", True),
)


def env_value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def env_field(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def env_secret(name: str, ref: SecretKeyRef, optional: bool = False) -> dict[str, Any]:
    """Secrets reach pods by reference only: values never pass through kubesft."""
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key, "optional": optional}},
    }


def aws_env(ref: SecretRef | None) -> list[dict[str, Any]]:
    if ref is None:
        return []
    return [
        env_secret(key, SecretKeyRef(name=ref.name, key=key), optional=optional)
        for key, optional in AWS_KEYS
    ]


def config_volume(name: str, config_map: str) -> dict[str, Any]:
    return {"name": name, "configMap": {"name": config_map}}


def pvc_volume(name: str, claim: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def mount(name: str, path: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def join(base: str, relative: str) -> str:
    """`/data` + `datasets/x` → `/data/datasets/x`; an empty relative path is the base."""
    relative = relative.strip("/")
    return f"{base}/{relative}" if relative else base


def location_uri(loc: PVCLocation) -> str:
    return f"pvc://{loc.claim_name}/{loc.path.strip('/')}"


def parse_location(uri: str) -> PVCLocation:
    """Inverse of :func:`location_uri`."""
    if not uri.startswith("pvc://"):
        raise ValueError(f"not a pvc:// location: {uri!r}")
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return PVCLocation(claim_name=claim, path=path)


def resources(
    cpu: str | None, memory: str | None, extended: dict[str, int] | None = None
) -> dict[str, Any]:
    """Requests equal limits: training pods should be Guaranteed, never overcommitted."""
    amounts: dict[str, Any] = {}
    if cpu:
        amounts["cpu"] = cpu
    if memory:
        amounts["memory"] = memory
    for name, count in (extended or {}).items():
        if count:
            amounts[name] = str(count)  # quantities are strings in the API
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


# Exit codes of the trainer image (kubesft_trainer/exit_codes.py).
EXIT_INVALID = 2
"""Bad configuration or data (trainer and `prepare`)."""
EXIT_NUMERICAL_INSTABILITY = 4
"""The trainer's loss or gradient norm went non-finite."""
EXIT_PREEMPTED = 75
"""The trainer checkpointed on SIGTERM and exited."""


def pod_failure_policy(container: str, *, trainer: bool = False) -> dict[str, Any]:
    """Preemption and node drains are not the job's fault; bad config/data never heals.

    For the trainer also: a divergence fails at once (the retry would diverge the same
    way), and a pod that checkpointed on SIGTERM is replaced without counting against
    `backoffLimit` (a drain by `kubectl drain` or a spot reclaim may come without the
    DisruptionTarget condition that the eviction API and the scheduler's preemption add).
    """
    fail = [EXIT_INVALID, EXIT_NUMERICAL_INSTABILITY] if trainer else [EXIT_INVALID]
    rules: list[dict[str, Any]] = [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": container, "operator": "In", "values": fail},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
    if trainer:
        ignore = {"containerName": container, "operator": "In", "values": [EXIT_PREEMPTED]}
        rules.append({"action": "Ignore", "onExitCodes": ignore})
    return {"rules": rules}
