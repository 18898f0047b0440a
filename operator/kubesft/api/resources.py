"""Pod scheduling knobs shared by the trainer Job: GPUs, nodes, placement."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kubesft.api.base import MAX_LIST, APIModel, Rule, cel_field
from kubesft.api.formats import LabelKey, LabelValue, NodeSelector, ObjectName, Quantity


class Toleration(APIModel):
    """A core/v1 Toleration, with the apiserver's rules for pods (core/v1 validation)."""

    rules = (
        Rule(
            cel=f"has(self.key) || {cel_field('operator', 'Equal')} == 'Exists'",
            message="a toleration without a key must use operator Exists (it tolerates all taints)",
            check=lambda t: t.key is not None or t.operator == "Exists",
            field_path=".operator",
        ),
        Rule(
            cel=f"!has(self.value) || self.value == '' || {cel_field('operator', 'Equal')} "
            "== 'Equal'",
            message="a toleration with operator Exists takes no value",
            check=lambda t: not t.value or t.operator == "Equal",
            field_path=".value",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="tolerationSeconds applies only to effect NoExecute",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            field_path=".tolerationSeconds",
        ),
    )

    key: LabelKey | None = None
    """Taint key (a label key); omit it, with operator Exists, to tolerate every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
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
    gpu_resource_name: LabelKey = "nvidia.com/gpu"
    """Extended resource name of the GPUs (a qualified name), e.g. `amd.com/gpu`."""
    cpu: Quantity | None = None
    """CPU request and limit per pod, e.g. `8`."""
    memory: Quantity | None = None
    """Memory request and limit per pod, e.g. `64Gi`."""
    ephemeral_storage: Quantity | None = None
    """Ephemeral storage request and limit per pod (scratch, /tmp, logs), e.g. `100Gi`."""
    shm_size: Quantity = "8Gi"
    """Size of the /dev/shm emptyDir (data loader workers and NCCL need it)."""
    node_selector: NodeSelector = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_LIST)
    affinity: dict[str, Any] | None = None
    """A core/v1 Affinity, passed through to the pods."""
    priority_class_name: ObjectName | None = None
    """A PriorityClass for the trainer pods (preemption order among jobs)."""
