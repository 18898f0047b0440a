"""Mount points that a container needs on the host, created on demand and removed after.

A bind mount needs an existing target. Targets missing on the host (``/dev/termination-log``,
``/var/run/secrets/...``, a test's ``/data/...``) are created before a container starts and
removed once no running container uses them, so the host is left as it was found: files
we created are removed, directories only when empty.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path, PurePosixPath


def _topmost_missing(path: Path) -> Path | None:
    """The highest ancestor-or-self of ``path`` that does not exist, or None if it exists."""
    if path.exists() or path.is_symlink():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def host_targets(mounts: list[tuple[str, bool]], working_dir: str) -> list[tuple[str, bool]]:
    """The ``(path, is_dir)`` mount targets, and the working directory, that lie on the host.

    Paths below another mount's target are created inside that mounted volume instead.
    """
    inside = [PurePosixPath(target) for target, _ in mounts]

    def on_host(path: str) -> bool:
        return not any(other in PurePosixPath(path).parents for other in inside)

    found = [(target, is_dir) for target, is_dir in mounts if on_host(target)]
    if on_host(working_dir) and PurePosixPath(working_dir) not in inside:
        found.append((working_dir, True))
    return found


class HostMountPoints:
    """Reference-counted host paths: created by ``acquire``, removed by the last ``release``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, int] = {}
        self._created: set[Path] = set()  # targets that did not exist before us
        self._tops: set[Path] = set()  # every topmost path created, while it exists

    def acquire(self, targets: list[tuple[str, bool]]) -> None:
        """Make sure each ``(path, is_dir)`` exists (an empty file where not a directory)."""
        with self._lock:
            for target, is_dir in targets:
                path = Path(target)
                self._users[path] = self._users.get(path, 0) + 1
                top = _topmost_missing(path)
                if top is None:
                    continue
                if is_dir:
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                self._created.add(path)
                self._tops.add(top)

    def release(self, targets: list[tuple[str, bool]]) -> None:
        with self._lock:
            for target, _ in targets:
                path = Path(target)
                self._users[path] = self._users.get(path, 1) - 1
                if self._users[path] > 0:
                    continue
                del self._users[path]
                if path in self._created:
                    self._created.discard(path)
                    self._remove(path)

    def _ours(self, path: Path) -> bool:
        return any(path == top or top in path.parents for top in self._tops)

    def _remove(self, path: Path) -> None:
        """Remove ``path`` (a file we created, or an empty directory), then the empty
        directories we created above it; stop at the first that is not empty."""
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            return
        self._tops.discard(path)
        current = path.parent
        while self._ours(current):
            try:
                current.rmdir()
            except OSError:
                return
            self._tops.discard(current)
            current = current.parent

    def remove_leftovers(self) -> None:
        """At shutdown: remove the empty directories created on the way to any target."""
        with self._lock:
            for top in sorted(self._tops, key=lambda p: len(p.parts), reverse=True):
                if top.is_dir():
                    for sub in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
            self._tops.clear()
