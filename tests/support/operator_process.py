"""The kubesft operator as a separate process, so tests can SIGKILL and restart it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.controlplane import free_port

REFUSED = re.compile(r"API error 403|\bforbidden\b|\bpermissions?\b", re.IGNORECASE)
"""A refusal in an operator log: its own API-error line, or kopf's words for one."""


def refusals(log: str) -> list[str]:
    """Lines of an operator log that say the API refused a call.

    Not a bare "403": timestamps (",403") and UIDs contain it, which once failed a test.
    """
    return [line for line in log.splitlines() if REFUSED.search(line)]


class OperatorProcess:
    """`kubesft operator run` for one namespace, logging to a file that tests can read."""

    def __init__(
        self, kubeconfig: str, namespace: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.env = {
            "KUBESFT_METRICS_PORT": "0",
            "KUBESFT_RESYNC_SECONDS": "3",
            "KUBESFT_PROGRESS_INTERVAL_SECONDS": "1",
            "KUBESFT_TRAINER_IMAGE": "kubesft/trainer:e2e",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.liveness_port = free_port()

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.env}
        liveness = f"http://127.0.0.1:{self.liveness_port}/healthz"
        argv = [sys.executable, "-m", "kubesft.cli", "operator", "run", "-n", self.namespace]
        argv += ["--liveness", liveness, "--log-format", "json"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, exactly like a node failure."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = 30) -> None:
        """Until this start of the operator logged that kopf finished its startup."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.logs().count("Initial authentication has finished") >= self.starts:
                return
            time.sleep(0.2)
        raise TimeoutError(f"operator did not start within {timeout}s:\n{self.logs()[-2000:]}")
