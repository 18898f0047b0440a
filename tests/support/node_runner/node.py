"""The fake node's API object: registration, capacity, heartbeats, removal."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.support.node_runner.kube import JSON, Kube, now_rfc3339

LEASE_SECONDS = 40  # the kubelet's default; the node-lifecycle controller's grace matches it
KUBELET_VERSION = "v0.0.0-kubesft-node-runner"


def _host_memory() -> str:
    """Physical memory from /proc/meminfo as a quantity, or 16Gi where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1])}Ki"
    except OSError:
        pass
    return "16Gi"


@dataclass(frozen=True)
class NodeConfig:
    """What the node advertises: name, labels and capacity (extended resources included)."""

    name: str = "kubesft-local"
    labels: Mapping[str, str] = field(default_factory=dict)
    extended_resources: Mapping[str, str] = field(default_factory=dict)
    cpu: str = field(default_factory=lambda: str(os.cpu_count() or 1))
    memory: str = field(default_factory=_host_memory)
    pods: int = 110
    host_ip: str = "127.0.0.1"

    @property
    def all_labels(self) -> dict[str, str]:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            **self.labels,
        }

    @property
    def capacity(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": "100Gi",
            **self.extended_resources,
        }


def node_object(config: NodeConfig) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": config.all_labels},
        "spec": {},
    }


def _condition(kind: str, status: str, reason: str, message: str, since: str) -> JSON:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now_rfc3339(),
        "lastTransitionTime": since,
    }


def node_status(config: NodeConfig, since: str) -> JSON:
    """The status a healthy kubelet reports; ``since`` is when the node became Ready."""
    return {
        "capacity": config.capacity,
        "allocatable": config.capacity,
        "conditions": [
            _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok", since),
            _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok", since),
            _condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok", since),
            _condition("Ready", "True", "KubeletReady", "kubesft node runner is ready", since),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.host_ip},
            {"type": "Hostname", "address": config.name},
        ],
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": config.all_labels["kubernetes.io/arch"],
            "containerRuntimeVersion": "kubesft-node-runner://0",
            "osImage": platform.platform(),
            "kernelVersion": platform.release(),
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


class NodeRegistration:
    """The Node object and its Lease, kept fresh by ``heartbeat()``."""

    def __init__(self, kube: Kube, config: NodeConfig) -> None:
        self.kube, self.config = kube, config
        self.since = now_rfc3339()
        self.node: JSON = {}

    def register(self) -> None:
        self.node = self.kube.create_or_update_node(node_object(self.config))
        self.heartbeat()

    def heartbeat(self) -> None:
        self.kube.patch_node_status(self.config.name, node_status(self.config, self.since))
        self.kube.renew_lease(self.node, LEASE_SECONDS)

    def remove(self) -> None:
        self.kube.delete_node(self.config.name)  # GC removes the Lease (owned by the Node)
