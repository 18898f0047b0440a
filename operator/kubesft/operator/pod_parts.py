"""Pieces of pod specs shared by the preparation and trainer Jobs."""

from __future__ import annotations

from typing import Any

from kubesft.api.base import PVCLocation, SecretKeyRef, SecretRef
from kubesft.api.formats import is_relative_path
from kubesft.api.report import ExitCode
from kubesft.api.tracking import MLFLOW_CREDENTIAL_KEYS

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


def mlflow_env(ref: SecretRef | None) -> list[dict[str, Any]]:
    """MLflow's credential variables from `spec.tracking.mlflow.credentialsSecretRef`."""
    if ref is None:
        return []
    return [
        env_secret(key, SecretKeyRef(name=ref.name, key=key), optional=True)
        for key in MLFLOW_CREDENTIAL_KEYS
    ]


def cpu_threads_env(cpu: str | None) -> list[dict[str, Any]]:
    """OMP_NUM_THREADS from the CPU limit (whole cores, at least 1). torch sizes its thread
    pool by the host's cores, not the container's limit; more threads than the limit
    allows are throttled and spin against each other, several times slower."""
    if cpu is None:
        return []
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:  # a quantity suffix no CPU count uses: leave torch's default
        return []
    return [env_value("OMP_NUM_THREADS", str(max(1, int(cores))))]


def config_volume(name: str, config_map: str) -> dict[str, Any]:
    return {"name": name, "configMap": {"name": config_map}}


def pvc_volume(name: str, claim: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def mount(name: str, path: str, read_only: bool = False, sub_path: str = "") -> dict[str, Any]:
    """A volumeMount; `sub_path` mounts only that folder (or file) of the volume."""
    out: dict[str, Any] = {"name": name, "mountPath": path, "readOnly": read_only}
    if sub_path:
        out["subPath"] = inside_volume(sub_path)
    return out


def inside_volume(relative: str) -> str:
    """`relative` when it stays inside its volume; ValueError otherwise.

    Admission refuses such paths already (`formats.RELATIVE_PATH`); this keeps one that
    slipped past it (an object stored under an older CRD) out of every pod spec.
    """
    if not is_relative_path(relative):
        raise ValueError(f"path {relative!r} leaves its volume (absolute, '.' or '..')")
    return relative


def join(base: str, relative: str) -> str:
    """`/data` + `datasets/x` → `/data/datasets/x`; an empty relative path is the base.

    Raises ValueError for a path that would leave `base` (see :func:`inside_volume`).
    """
    relative = inside_volume(relative)
    return f"{base}/{relative}" if relative else base


def location_uri(loc: PVCLocation) -> str:
    return loc.uri()


def parse_location(uri: str) -> PVCLocation:
    """Inverse of :func:`location_uri`."""
    if not uri.startswith("pvc://"):
        raise ValueError(f"not a pvc:// location: {uri!r}")
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return PVCLocation(claim_name=claim, path=path)


def resources(
    cpu: str | None,
    memory: str | None,
    extended: dict[str, int] | None = None,
    ephemeral_storage: str | None = None,
) -> dict[str, Any]:
    """Requests equal limits: training pods should be Guaranteed, never overcommitted."""
    amounts: dict[str, Any] = {}
    if cpu:
        amounts["cpu"] = cpu
    if memory:
        amounts["memory"] = memory
    if ephemeral_storage:
        amounts["ephemeral-storage"] = ephemeral_storage
    for name, count in (extended or {}).items():
        if count:
            amounts[name] = str(count)  # quantities are strings in the API
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def pod_failure_policy(container: str, *, trainer: bool = False) -> dict[str, Any]:
    """Preemption and node drains are not the job's fault; bad config/data never heals.

    For the trainer also (`ExitCode`): a divergence fails at once (a retry would diverge the
    same way), and a pod that checkpointed on SIGTERM is replaced without counting against
    `backoffLimit` (a drain by `kubectl drain --disable-eviction` or a node shutdown may come
    without the DisruptionTarget condition that the eviction API and preemption add).
    """
    fail = [ExitCode.INVALID, ExitCode.NUMERICAL_INSTABILITY] if trainer else [ExitCode.INVALID]
    rules: list[dict[str, Any]] = [
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": container,
                "operator": "In",
                "values": [int(code) for code in fail],
            },
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
    if trainer:
        preempted = [int(ExitCode.PREEMPTED)]
        ignore = {"containerName": container, "operator": "In", "values": preempted}
        rules.append({"action": "Ignore", "onExitCodes": ignore})
    return {"rules": rules}
