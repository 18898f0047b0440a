"""A container of a pod: its command line, its state, and what the kubelet shows of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.node_runner.env import expand
from tests.support.node_runner.host import Host
from tests.support.node_runner.kube import JSON
from tests.support.node_runner.process import Attempt
from tests.support.node_runner.status import waiting


@dataclass(frozen=True)
class ContainerProcess:
    """A running container, for ``NodeRunner.processes()``."""

    namespace: str
    pod: str
    container: str
    pid: int


@dataclass
class ContainerSlot:
    """One container of the pod: its spec, its current and last state, its live process."""

    spec: JSON
    init: bool
    state: JSON = field(default_factory=lambda: waiting("ContainerCreating"))
    last_state: JSON = field(default_factory=dict)
    restarts: int = 0
    attempt: Attempt | None = None
    next_start: float = 0.0
    done: bool = False
    code: int | None = None
    container_id: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> JSON:
        ready = self.attempt is not None or (self.init and self.done and self.code == 0)
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": self.container_id,
            "state": self.state,
            "lastState": self.last_state,
            "ready": ready,
            "started": self.attempt is not None,
            "restartCount": self.restarts,
        }


def image_repository(image: str) -> str:
    """``registry/name:tag@sha256:...`` → ``registry/name`` (for the entrypoint table)."""
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


class StartError(Exception):
    """The container cannot be started at all (the runtime's StartError, exit code 128)."""


def container_argv(host: Host, pod: JSON, container: JSON, env: dict[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded; ``python`` is this repo's interpreter.

    A ``host.command_override`` that returns an argv replaces command and args entirely.
    """
    override = host.command_override(pod, container) if host.command_override else None
    if override is not None:
        return [expand(part, env) for part in override]
    command = container.get("command") or list(
        host.entrypoints.get(image_repository(container.get("image", "")), [])
    )
    if not command:
        raise StartError(
            f"container {container['name']!r} has no command; the node runner ignores images, "
            "so set command (or pass entrypoints= for its image)"
        )
    argv = [expand(part, env) for part in [*command, *container.get("args", [])]]
    if argv[0] in ("python", "python3"):
        argv[0] = host.python
    return argv
