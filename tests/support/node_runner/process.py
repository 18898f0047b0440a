"""One container run as a local process in a private mount namespace.

``unshare --mount`` gives the process its own mount table; a short ``sh`` prologue
bind-mounts each volume (and the termination-message file) at its real mountPath, then
``exec``s the command, so the pid we hold is the container's main process and absolute
paths in commands and config files work unchanged. Mount points missing on the host are
created there (empty directories and files), which is harmless on a test machine.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.support.node_runner.volumes import Mount

MESSAGE_LIMIT = 4096  # bytes of a termination-message file
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the kubelet's line and byte limits
FALLBACK_LOG_BYTES = 2048


@dataclass
class Attempt:
    """One start of one container: its process, when it started, where its log begins."""

    popen: subprocess.Popen[bytes]
    started_at: str
    log_path: Path
    log_offset: int
    message_file: Path
    host_targets: list[tuple[str, bool]]
    oom_killed: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid


def mount_script(mounts: list[Mount], working_dir: str) -> str:
    """The ``sh`` prologue: bind each mount (parents before children), cd, exec the command."""
    lines = ["set -e"]
    for mount in sorted(mounts, key=lambda m: len(PurePosixPath(m.target).parts)):
        source, target = shlex.quote(str(mount.source)), shlex.quote(mount.target)
        if mount.source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            parent = shlex.quote(str(PurePosixPath(mount.target).parent))
            lines.append(f"mkdir -p {parent}; [ -e {target} ] || : > {target}")
        lines.append(f"mount --bind {source} {target}")
        if mount.read_only:  # best effort: some filesystems refuse a read-only remount
            lines.append(f"mount -o remount,bind,ro {target} 2>/dev/null || true")
    lines.append(f"mkdir -p {shlex.quote(working_dir)}; cd {shlex.quote(working_dir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def launch(
    argv: list[str],
    env: dict[str, str],
    mounts: list[Mount],
    working_dir: str,
    log_path: Path,
    message_file: Path,
    started_at: str,
    host_targets: list[tuple[str, bool]],
) -> Attempt:
    """Start ``argv`` in its own session (so its process group can be signalled as one).

    ``host_targets`` are the mount points this attempt has acquired on the host; the
    caller releases them after the process exits.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    message_file.parent.mkdir(parents=True, exist_ok=True)
    message_file.write_bytes(b"")
    script = mount_script(mounts, working_dir)
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    with log_path.open("ab") as log:
        offset = log.tell()
        popen = subprocess.Popen(
            [*wrapper, *argv],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Attempt(popen, started_at, log_path, offset, message_file, host_targets)


def exit_code(returncode: int) -> int:
    """A container runtime's exit code: 128 + signal for a process killed by a signal."""
    return returncode if returncode >= 0 else 128 - returncode


def signal_group(pid: int, sig: int) -> None:
    """Signal the container's whole process group; it may have gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_group(pid: int) -> None:
    signal_group(pid, signal.SIGKILL)


def _log_tail(attempt: Attempt) -> str:
    try:
        with attempt.log_path.open("rb") as log:
            log.seek(attempt.log_offset)
            data = log.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines)[-FALLBACK_LOG_BYTES:]


def termination_message(attempt: Attempt, code: int, policy: str) -> str:
    """The termination-message file (first 4096 bytes), or the log tail where policy says so."""
    try:
        message = attempt.message_file.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
    except OSError:
        message = ""
    if not message and code != 0 and policy == "FallbackToLogsOnError":
        return _log_tail(attempt)
    return message
