"""Pod scheduling knobs shared by the trainer Job: GPUs, nodes, placement."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kubesft.api.base import MAX_LIST, MAX_NAME, APIModel, Rule, cel_field

QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


class Toleration(APIModel):
    """A core/v1 Toleration."""

    key: str | None = Field(default=None, max_length=MAX_NAME)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, max_length=MAX_NAME)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(APIModel):
    """What each trainer pod asks for, and where it may run."""

    rules = (
        Rule(
            cel=f"{cel_field('nodes', 1)} == 1 || {cel_field('gpus', 1)} >= 1",
            message="resources.nodes > 1 needs resources.gpus >= 1 per node",
            check=lambda r: r.nodes == 1 or r.gpus >= 1,
            field_path=".nodes",
        ),
    )

    gpus: int = Field(default=1, ge=0, le=16)
    """GPUs per node (0 runs on CPU, for tests and tiny models)."""
    nodes: int = Field(default=1, ge=1, le=256)
    """Nodes; more than one runs an Indexed Job with one pod per node."""
    gpu_resource_name: str = Field(default="nvidia.com/gpu", min_length=1, max_length=MAX_NAME)
    """Extended resource name of the GPUs, e.g. `amd.com/gpu`."""
    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=64)
    """CPU request and limit per pod, e.g. `8`."""
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=64)
    """Memory request and limit per pod, e.g. `64Gi`."""
    shm_size: str = Field(default="8Gi", pattern=QUANTITY_PATTERN, max_length=64)
    """Size of the /dev/shm emptyDir (data loader workers and NCCL need it)."""
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=MAX_LIST)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_LIST)
    affinity: dict[str, Any] | None = None
    """A core/v1 Affinity, passed through to the pods."""
    priority_class_name: str | None = Field(default=None, max_length=MAX_NAME)
