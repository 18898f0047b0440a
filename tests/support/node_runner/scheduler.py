"""A one-node scheduler: bind every pod that fits, leave the rest Pending and say why.

"Fits" means the pod's ``nodeSelector`` matches the node's labels and its extended-resource
requests (``nvidia.com/gpu``) do not exceed the node's capacity. Affinity, taints, spreading
and the sum of other pods' requests are not considered.
"""

from __future__ import annotations

import logging

from tests.support.node_runner.kube import JSON, Kube, now_rfc3339, quantity
from tests.support.node_runner.node import NodeConfig

log = logging.getLogger(__name__)
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")


def wants_scheduling(pod: JSON) -> bool:
    spec, meta = pod["spec"], pod["metadata"]
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
        and not meta.get("deletionTimestamp")
        and pod.get("status", {}).get("phase", "Pending") == "Pending"
    )


def _extended_requests(pod: JSON) -> dict[str, float]:
    """Per resource: the larger of the containers' sum and the largest init container."""

    def requests(container: JSON) -> dict[str, float]:
        resources = container.get("resources", {})
        merged = {**resources.get("limits", {}), **resources.get("requests", {})}
        return {k: float(quantity(v)) for k, v in merged.items() if k not in STANDARD_RESOURCES}

    total: dict[str, float] = {}
    for container in pod["spec"]["containers"]:
        for name, amount in requests(container).items():
            total[name] = total.get(name, 0.0) + amount
    for container in pod["spec"].get("initContainers", []):
        for name, amount in requests(container).items():
            total[name] = max(total.get(name, 0.0), amount)
    return total


def unschedulable_reason(pod: JSON, node: NodeConfig) -> str | None:
    """Why ``pod`` cannot run on ``node`` in the scheduler's words, or None when it fits."""
    labels = node.all_labels
    selector = pod["spec"].get("nodeSelector", {})
    if any(labels.get(key) != value for key, value in selector.items()):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    capacity = node.capacity
    for name, amount in sorted(_extended_requests(pod).items()):
        if amount > float(quantity(capacity.get(name, "0"))):
            return f"0/1 nodes are available: 1 Insufficient {name}."
    return None


def _already_marked(pod: JSON, message: str) -> bool:
    for cond in pod.get("status", {}).get("conditions", []):
        if cond.get("type") == "PodScheduled":
            return bool(cond.get("status") == "False" and cond.get("message") == message)
    return False


def schedule(kube: Kube, pod: JSON, node: NodeConfig) -> None:
    """Bind ``pod`` to ``node``, or record PodScheduled=False with the reason (once)."""
    meta = pod["metadata"]
    reason = unschedulable_reason(pod, node)
    if reason is None:
        try:
            kube.bind_pod(meta["namespace"], meta["name"], node.name)
            log.info("bound %s/%s to %s", meta["namespace"], meta["name"], node.name)
        except Exception as err:  # 409: bound meanwhile; 404: deleted meanwhile
            log.debug("could not bind %s/%s: %s", meta["namespace"], meta["name"], err)
        return
    if _already_marked(pod, reason):
        return
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": reason,
        "lastTransitionTime": now_rfc3339(),
    }
    try:
        kube.patch_pod_status(meta["namespace"], meta["name"], {"conditions": [condition]})
    except Exception as err:
        log.debug("could not mark %s/%s unschedulable: %s", meta["namespace"], meta["name"], err)
