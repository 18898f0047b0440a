"""One pod's life on the fake node: volumes, init containers, main containers, status.

A ``PodWorker`` thread per pod plays the kubelet's pod worker: it sets up volumes, runs the
init containers one by one and then the main containers side by side, restarts them as
``restartPolicy`` says, patches the pod status on every change, and on deletion stops the
processes (SIGTERM, then SIGKILL after the grace period) and deletes the pod for good.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.node_runner.containers import (
    ContainerProcess,
    ContainerSlot,
    StartError,
    container_argv,
)
from tests.support.node_runner.env import POD_IP, ContainerConfigError, container_env
from tests.support.node_runner.host import Host
from tests.support.node_runner.kube import JSON, is_status, now_rfc3339
from tests.support.node_runner.mountpoints import host_targets as on_host
from tests.support.node_runner.process import (
    Attempt,
    exit_code,
    kill_group,
    launch,
    signal_group,
    termination_message,
)
from tests.support.node_runner.status import (
    condition,
    exit_reason,
    running,
    should_restart,
    terminated,
    waiting,
)
from tests.support.node_runner.volumes import (
    Mount,
    VolumeError,
    check_not_hiding,
    container_mounts,
    prepare_volumes,
)

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2
RETRY_SECONDS = 1.0  # missing ConfigMaps/Secrets are retried this often
BACKOFF_START_SECONDS, BACKOFF_MAX_SECONDS = 1.0, 10.0  # the kubelet's: 10 s, up to 5 min
GRACE_CAP_SECONDS = 5.0
DEFAULT_MESSAGE_PATH = "/dev/termination-log"


def _attempts(slots: list[ContainerSlot]) -> list[Attempt]:
    return [slot.attempt for slot in slots if slot.attempt is not None]


class PodWorker(threading.Thread):
    """Runs one pod to completion (or deletion), reporting status like a kubelet."""

    def __init__(self, host: Host, pod: JSON, claim_oom: Callable[[JSON], bool]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.host, self.pod, self.claim_oom = host, pod, claim_oom
        self.namespace, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.policy = pod["spec"].get("restartPolicy", "Always")
        self.init_slots = [ContainerSlot(c, True) for c in pod["spec"].get("initContainers", [])]
        first = "PodInitializing" if self.init_slots else "ContainerCreating"
        self.main_slots = [
            ContainerSlot(c, False, state=waiting(first)) for c in pod["spec"]["containers"]
        ]
        self.start_time = now_rfc3339()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._deleting = threading.Event()
        self._aborted = threading.Event()
        self._finished = False
        self._volumes: dict[str, Path] = {}
        self._conditions: dict[str, JSON] = {}
        self._published: JSON | None = None

    # -- called from other threads

    def observe(self, pod: JSON) -> bool:
        """Take the pod's latest version. True when it is marked for deletion and this
        worker has already finished, so the caller must delete it."""
        with self._lock:
            self.pod = pod
            marked = bool(pod["metadata"].get("deletionTimestamp"))
            if marked:
                self._deleting.set()
                self._wake.set()
            return marked and self._finished

    def abort(self) -> None:
        """Stop at once without reporting: the pod is gone or the runner is stopping."""
        self._aborted.set()
        self._wake.set()
        for attempt in _attempts(self._slots()):
            kill_group(attempt.pid)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to every running container of the pod; False when none runs."""
        attempts = _attempts(self._slots())
        for attempt in attempts:
            signal_group(attempt.pid, sig)
        self._wake.set()
        return bool(attempts)

    def processes(self) -> list[ContainerProcess]:
        found = [(slot.name, slot.attempt) for slot in self._slots()]
        return [
            ContainerProcess(self.namespace, self.pod_name, name, attempt.pid)
            for name, attempt in found
            if attempt is not None
        ]

    # -- the worker thread

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.pod_name)
        finally:
            for slot in self._slots():
                if slot.attempt is not None:
                    kill_group(slot.attempt.pid)
                    slot.attempt.popen.wait()
                    self.host.mount_points.release(slot.attempt.host_targets)
                    slot.attempt = None
            with self._lock:
                self._finished = True
                delete = self._deleting.is_set() and not self._aborted.is_set()
            if delete:
                self.host.kube.delete_pod_now(self.namespace, self.pod_name, self.uid)

    def _run(self) -> None:
        self._publish()
        if not self._prepare_volumes():
            self._finish()
            return
        for slot in self.init_slots:
            if not self._supervise([slot]):
                self._finish()
                return
        for slot in self.main_slots:
            slot.state = waiting("ContainerCreating")
        self._supervise(self.main_slots)
        self._finish()

    def _stopping(self) -> bool:
        return self._aborted.is_set() or self._deleting.is_set()

    def _slots(self) -> list[ContainerSlot]:
        return [*self.init_slots, *self.main_slots]

    def _prepare_volumes(self) -> bool:
        while not self._stopping():
            try:
                self._volumes = prepare_volumes(self.host, self.pod)
                return True
            except Exception as err:  # missing objects appear later; the kubelet retries too
                log.info("pod %s/%s: volumes not ready: %s", self.namespace, self.pod_name, err)
                for slot in self._slots():
                    slot.state = waiting("ContainerCreating", f"MountVolume.SetUp failed: {err}")
                self._publish()
                self._wake.wait(RETRY_SECONDS)
                self._wake.clear()
        return False

    def _supervise(self, slots: list[ContainerSlot]) -> bool:
        """Run ``slots`` until each is done; True when all succeeded."""
        while True:
            if self._aborted.is_set():
                return False
            if self._deleting.is_set():
                self._terminate(slots)
                return False
            self._simulate_oom(slots)
            for slot in slots:
                if slot.attempt is not None:
                    self._reap(slot, may_restart=True)
                elif not slot.done and time.monotonic() >= slot.next_start:
                    self._start(slot)
            self._publish()
            if all(slot.done for slot in slots):
                return all(slot.code == 0 for slot in slots)
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()

    def _start(self, slot: ContainerSlot) -> None:
        spec = slot.spec
        try:
            env = self._environment(spec)
            argv = container_argv(self.host, self.pod, spec, env)
            mounts = container_mounts(spec, self._volumes, env)
            check_not_hiding(mounts, self.host.protected)
        except ContainerConfigError as err:
            slot.state = waiting("CreateContainerConfigError", str(err))
            slot.next_start = time.monotonic() + RETRY_SECONDS
            return
        except (StartError, VolumeError) as err:  # cannot ever start: report it as a runtime would
            now = now_rfc3339()
            slot.state = terminated(128, "StartError", str(err), now, now, "")
            slot.done, slot.code = True, 128
            return
        message_file = self._container_dir(slot) / f"termination-log-{slot.restarts}"
        message_path = spec.get("terminationMessagePath") or DEFAULT_MESSAGE_PATH
        mounts.append(Mount(message_file, message_path, False))
        working_dir = spec.get("workingDir") or "/"
        host_targets = on_host([(m.target, m.source.is_dir()) for m in mounts], working_dir)
        self.host.mount_points.acquire(host_targets)
        log_path = self.host.log_path(self.namespace, self.pod_name, slot.name)
        try:
            slot.attempt = launch(
                argv, env, mounts, working_dir, log_path, message_file, now_rfc3339(), host_targets
            )
        except BaseException:
            self.host.mount_points.release(host_targets)
            raise
        slot.container_id = f"kubesft-node-runner://{self.uid}/{slot.name}/{slot.restarts}"
        slot.state = running(slot.attempt.started_at)
        log.info(
            "pod %s/%s: started %s (pid %d): %s",
            *(self.namespace, self.pod_name, slot.name, slot.attempt.pid, argv),
        )

    def _environment(self, spec: JSON) -> dict[str, str]:
        """The "image" environment (this repo's venv first on PATH), then the pod's."""
        venv_bin = str(Path(self.host.python).parent)
        base = {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.pod_name,
            "PYTHONUNBUFFERED": "1",
            **self.host.image_env,
        }
        node = self.host.node
        own = container_env(
            self.host.kube, self.pod, spec, self.host.cluster, node.capacity, node.host_ip
        )
        return {**base, **own}

    def _container_dir(self, slot: ContainerSlot) -> Path:
        return self.host.pod_dir(self.uid) / "containers" / slot.name

    def _reap(self, slot: ContainerSlot, may_restart: bool) -> bool:
        """Record the exit of ``slot``'s process if it has exited; True if it has."""
        attempt = slot.attempt
        assert attempt is not None
        returncode = attempt.popen.poll()
        if returncode is None:
            return False
        kill_group(attempt.pid)  # whatever it left running in its group goes with it
        self.host.mount_points.release(attempt.host_targets)
        code = exit_code(returncode)
        policy = slot.spec.get("terminationMessagePolicy", "File")
        slot.state = terminated(
            code,
            exit_reason(code, attempt.oom_killed),
            termination_message(attempt, code, policy),
            attempt.started_at,
            now_rfc3339(),
            slot.container_id,
        )
        slot.attempt, slot.code = None, code
        log.info("pod %s/%s: %s exited %d", self.namespace, self.pod_name, slot.name, code)
        if may_restart and should_restart(self.policy, code, slot.init):
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_START_SECONDS * 2**slot.restarts)
            slot.last_state, slot.restarts = slot.state, slot.restarts + 1
            slot.state = waiting("CrashLoopBackOff", f"back-off {delay:g}s restarting {slot.name}")
            slot.next_start = time.monotonic() + delay
        else:
            slot.done = True
        return True

    def _simulate_oom(self, slots: list[ContainerSlot]) -> None:
        live = [slot for slot in slots if slot.attempt is not None]
        if live and self.claim_oom(self.pod):
            attempt = live[0].attempt
            assert attempt is not None
            attempt.oom_killed = True
            kill_group(attempt.pid)

    def _terminate(self, slots: list[ContainerSlot]) -> None:
        """SIGTERM the running containers, SIGKILL whatever outlives the (capped) grace."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get(
            "deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)
        )
        deadline = time.monotonic() + min(float(grace), GRACE_CAP_SECONDS)
        for attempt in _attempts(slots):
            signal_group(attempt.pid, signal.SIGTERM)
        while _attempts(slots) and time.monotonic() < deadline:
            for slot in slots:
                if slot.attempt is not None:
                    self._reap(slot, may_restart=False)
            time.sleep(0.05)
        for slot in slots:
            if slot.attempt is not None:
                kill_group(slot.attempt.pid)
                slot.attempt.popen.wait()
                self._reap(slot, may_restart=False)
            slot.done = True

    def _finish(self) -> None:
        """Publish the terminal status (not when aborted: the pod may be gone)."""
        if self._aborted.is_set():
            return
        for slot in self._slots():
            slot.done = slot.done or self._deleting.is_set()
        self._publish()

    # -- status

    def _phase(self) -> str:
        init_failed = any(s.done and s.code != 0 for s in self.init_slots)
        if init_failed or (self._deleting.is_set() and not all(s.done for s in self._slots())):
            return "Failed"
        if all(s.done for s in self.main_slots):
            return "Succeeded" if all(s.code == 0 for s in self.main_slots) else "Failed"
        started = any(s.attempt is not None or s.restarts for s in self.main_slots)
        return "Running" if started else "Pending"

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        """A condition whose lastTransitionTime moves only when its status does."""
        previous = self._conditions.get(kind)
        status = "True" if ok else "False"
        since = (
            previous["lastTransitionTime"] if previous and previous["status"] == status else None
        )
        current = condition(kind, ok, since or now_rfc3339(), reason, message)
        self._conditions[kind] = current
        return current

    def _readiness(self, phase: str) -> tuple[bool, str, str]:
        """(ready, reason, message) shared by the ContainersReady and Ready conditions."""
        not_ready = [s.name for s in self.main_slots if s.attempt is None]
        if not not_ready:
            return True, "", ""
        if phase in ("Succeeded", "Failed"):
            return False, "PodCompleted", ""
        return False, "ContainersNotReady", f"containers with unready status: {not_ready}"

    def _status(self) -> JSON:
        phase = self._phase()
        pending_init = [s.name for s in self.init_slots if not (s.done and s.code == 0)]
        init_why = "ContainersNotInitialized" if pending_init else ""
        init_message = f"containers with incomplete status: {pending_init}" if pending_init else ""
        ready = self._readiness(phase)
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.host.node.host_ip,
            "hostIPs": [{"ip": self.host.node.host_ip}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodScheduled", True),
                self._condition("Initialized", not pending_init, init_why, init_message),
                self._condition("ContainersReady", *ready),
                self._condition("Ready", *ready),
            ],
            "containerStatuses": [s.status() for s in self.main_slots],
        }
        if self.init_slots:
            status["initContainerStatuses"] = [s.status() for s in self.init_slots]
        return status

    def _publish(self) -> None:
        status = self._status()
        if status == self._published:
            return
        try:
            self.host.kube.patch_pod_status(self.namespace, self.pod_name, status)
            self._published = status
        except Exception as err:
            if is_status(err, 404):  # deleted under us: nothing left to report to
                self._aborted.set()
            else:
                log.warning(
                    "pod %s/%s: status update failed: %s", self.namespace, self.pod_name, err
                )
