"""What all pods on the fake node share: API access, the node, and where files live."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.node_runner.kube import JSON, ClusterAccess, Kube
from tests.support.node_runner.mountpoints import HostMountPoints
from tests.support.node_runner.node import NodeConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

CommandOverride = Callable[[JSON, JSON], Sequence[str] | None]
"""(pod, container) → the argv to run instead of the container's own, or None to keep it."""


def _segment(name: str) -> str:
    """A path segment that cannot escape its parent (names are DNS labels anyway)."""
    return _UNSAFE.sub("_", name) or "_"


@dataclass(frozen=True)
class Host:
    """The node's shared state; ``root`` holds pods/, pvcs/ and logs/."""

    kube: Kube
    cluster: ClusterAccess
    node: NodeConfig
    root: Path
    python: str
    image_env: Mapping[str, str] = field(default_factory=dict)
    entrypoints: Mapping[str, Sequence[str]] = field(default_factory=dict)
    command_override: CommandOverride | None = None
    mount_points: HostMountPoints = field(default_factory=HostMountPoints)
    protected: tuple[Path, ...] = ()  # the "image": paths no volume may hide

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / _segment(uid)

    def pvc_path(self, namespace: str, claim: str) -> Path:
        return self.root / "pvcs" / _segment(namespace) / _segment(claim)

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return (
            self.root / "logs" / _segment(namespace) / _segment(pod) / f"{_segment(container)}.log"
        )
