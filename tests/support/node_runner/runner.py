"""``NodeRunner``: the fake node's threads (heartbeat, pod watch, pod workers) and controls."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tests.support.node_runner.containers import ContainerProcess
from tests.support.node_runner.host import CommandOverride, Host
from tests.support.node_runner.kube import (
    JSON,
    Kube,
    WatchExpired,
    is_status,
    read_cluster_access,
)
from tests.support.node_runner.kubelet import PodWorker
from tests.support.node_runner.node import NodeConfig, NodeRegistration
from tests.support.node_runner.scheduler import schedule, wants_scheduling

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
PodPredicate = Callable[[JSON], bool]
WATCH_SECONDS = 5  # short watches, so that stop() returns promptly
JOIN_SECONDS = 10.0


class NodeRunner:
    """A fake node: registers itself, binds pods to itself and runs them as local processes.

    ``root`` holds pods/ (volumes, termination-message files), pvcs/ and logs/.
    ``extended_resources`` is advertised capacity, e.g. ``{"nvidia.com/gpu": "8"}``;
    ``image_env`` stands in for the images' ENV; ``entrypoints`` maps an image repository
    (no tag) to the command used when a container sets none; ``command_override(pod,
    container)`` may return an argv to run instead of the container's command (e.g. a
    trainer that exits at once, for benchmarks of the control loop), or None to keep it.
    """

    def __init__(
        self,
        kubeconfig: str,
        root: Path,
        *,
        node_name: str = "kubesft-local",
        labels: Mapping[str, str] | None = None,
        extended_resources: Mapping[str, str] | None = None,
        heartbeat_seconds: float = 10.0,
        python: str = sys.executable,
        image_env: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        command_override: CommandOverride | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.root = Path(root).resolve()
        self.node = NodeConfig(
            name=node_name,
            labels=dict(labels or {}),
            extended_resources=dict(extended_resources or {}),
        )
        self.heartbeat_seconds = heartbeat_seconds
        self._host = Host(
            kube=Kube(kubeconfig),
            cluster=read_cluster_access(kubeconfig),
            node=self.node,
            root=self.root,
            python=python,
            image_env=dict(image_env or {}),
            entrypoints=dict(entrypoints or {}),
            command_override=command_override,
            protected=(Path(python).parent.parent, REPO_ROOT),
        )
        self._registration = NodeRegistration(self._host.kube, self.node)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}  # by pod uid
        self._deletes_sent: set[str] = set()
        self._oom_matches: list[PodPredicate] = []
        self._threads: list[threading.Thread] = []
        self._watch_kube: Kube | None = None

    # -- lifecycle

    def start(self) -> NodeRunner:
        """Register the node and start heartbeats and the pod watch; returns self."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._registration.register()
        for name, target in (("heartbeat", self._heartbeat_loop), ("pod watch", self._watch_loop)):
            thread = threading.Thread(target=target, name=f"node-runner {name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("node %s registered; running pods under %s", self.node.name, self.root)
        return self

    def stop(self) -> None:
        """Kill every container's process group, stop the threads, remove the Node."""
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.abort()
        if self._watch_kube is not None:
            self._watch_kube.interrupt_watch()
        for thread in [*workers, *self._threads]:
            thread.join(JOIN_SECONDS)
        self._host.mount_points.remove_leftovers()
        try:
            self._registration.remove()
        except Exception as err:  # the apiserver may be gone already at session end
            log.warning("could not remove node %s: %s", self.node.name, err)
        self._host.kube.close()

    def __enter__(self) -> NodeRunner:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where things are

    def pvc_path(self, namespace: str, claim: str) -> Path:
        """The directory that stands in for PersistentVolumeClaim ``claim`` (created here)."""
        path = self._host.pvc_path(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The container's stdout+stderr, all restarts appended."""
        return self._host.log_path(namespace, pod, container)

    def log_tails(self, namespace: str | None = None, lines: int = 40) -> dict[str, str]:
        """``namespace/pod/container`` → the last ``lines`` of its log (one namespace or all)."""
        logs = self.root / "logs"
        pattern = f"{namespace}/*/*.log" if namespace else "*/*/*.log"
        tails = {}
        for path in sorted(logs.glob(pattern)):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            key = f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"
            tails[key] = "\n".join(text)
        return tails

    # -- simulation controls

    def set_image_env(self, name: str, value: str | None) -> None:
        """Change the stand-in image ENV for containers started from now on (None unsets)."""
        env = self._host.image_env
        assert isinstance(env, dict)
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value

    def set_entrypoint(self, image_repository: str, command: Sequence[str] | None) -> None:
        """The stand-in ENTRYPOINT of an image (no tag), for containers that set no command."""
        entrypoints = self._host.entrypoints
        assert isinstance(entrypoints, dict)
        if command is None:
            entrypoints.pop(image_repository, None)
        else:
            entrypoints[image_repository] = list(command)

    def simulate_oom(self, match: PodPredicate) -> None:
        """SIGKILL the next running container of a pod ``match`` accepts; report OOMKilled."""
        with self._lock:
            self._oom_matches.append(match)

    def kill(self, namespace: str, pod: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the pod's running containers (reported as Error, 128 + sig)."""
        with self._lock:
            workers = [
                w for w in self._workers.values() if (w.namespace, w.pod_name) == (namespace, pod)
            ]
        if not any(worker.signal(sig) for worker in workers):
            raise LookupError(f"no running container in pod {namespace}/{pod}")

    def processes(self) -> list[ContainerProcess]:
        """Every running container: namespace, pod, container and pid."""
        with self._lock:
            workers = list(self._workers.values())
        return [process for worker in workers for process in worker.processes()]

    def _claim_oom(self, pod: JSON) -> bool:
        with self._lock:
            for index, match in enumerate(self._oom_matches):
                if match(pod):
                    del self._oom_matches[index]
                    return True
        return False

    # -- threads

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self._registration.heartbeat()
            except Exception as err:  # e.g. the Node was deleted: register it again
                log.warning("heartbeat failed (%s); registering node again", err)
                try:
                    self._registration.register()
                except Exception as again:
                    log.warning("registration failed: %s", again)

    def _watch_loop(self) -> None:
        """List, then watch from there; list again on 410 Gone or any other failure."""
        kube = self._watch_kube = Kube(self.kubeconfig)  # a watch holds a connection: own pool
        try:
            while not self._stop.is_set():
                try:
                    pods, version = kube.list_pods()
                    self._resync(pods)
                    while not self._stop.is_set():
                        for kind, pod in kube.watch_pods(version, WATCH_SECONDS):
                            version = pod["metadata"]["resourceVersion"]
                            if kind != "BOOKMARK":
                                self._handle(kind, pod)
                except WatchExpired:
                    log.debug("pod watch expired; listing again")
                except Exception as err:
                    if is_status(err, 410):
                        continue
                    if not self._stop.is_set():
                        log.warning("pod watch failed (%s); listing again", err)
                        self._stop.wait(1.0)
        finally:
            kube.close()

    def _resync(self, pods: list[JSON]) -> None:
        """After a (re)list: handle every pod, and forget workers whose pods vanished."""
        seen = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            vanished = [w.pod for uid, w in self._workers.items() if uid not in seen]
        for pod in vanished:
            self._handle("DELETED", pod)
        for pod in pods:
            self._handle("MODIFIED", pod)

    def _handle(self, kind: str, pod: JSON) -> None:
        meta, node_name = pod["metadata"], pod["spec"].get("nodeName")
        if kind == "DELETED":
            self._forget(meta["uid"])
        elif not node_name:
            if wants_scheduling(pod):
                schedule(self._host.kube, pod, self.node)
        elif node_name == self.node.name:
            self._run_or_update(pod)

    def _run_or_update(self, pod: JSON) -> None:
        meta, phase = pod["metadata"], pod.get("status", {}).get("phase")
        with self._lock:
            worker = self._workers.get(meta["uid"])
            if worker is None and not meta.get("deletionTimestamp") and not self._stop.is_set():
                if phase in ("Succeeded", "Failed"):
                    return  # finished before this runner saw it; nothing to run
                worker = PodWorker(self._host, pod, self._claim_oom)
                self._workers[meta["uid"]] = worker
                worker.start()
                return
        marked = bool(meta.get("deletionTimestamp"))
        finished = worker.observe(pod) if worker is not None else marked
        if finished and meta["uid"] not in self._deletes_sent:
            self._deletes_sent.add(meta["uid"])  # the kubelet's last act: delete with grace 0
            try:
                self._host.kube.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
            except Exception as err:
                self._deletes_sent.discard(meta["uid"])
                log.warning("could not delete pod %s/%s: %s", meta["namespace"], meta["name"], err)

    def _forget(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.pop(uid, None)
            self._deletes_sent.discard(uid)
        if worker is not None:
            worker.abort()
        shutil.rmtree(self._host.pod_dir(uid), ignore_errors=True)
