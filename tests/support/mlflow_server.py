"""A real MLflow tracking server on loopback for tests: `mlflow server`, SQLite and a folder.

The trainer talks to it over HTTP exactly as to a team's server (MlflowClient, REST API,
artifacts proxied through the server); only the storage behind it is a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.controlplane import free_port

START_TIMEOUT_S = 240.0
"""SQLite migrations and imports take ~50 s on two busy cores; the margin is for load."""


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """Start `mlflow server` storing under `root`; yields its URL, stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        *(str(Path(sys.executable).parent / "mlflow"), "server"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--artifacts-destination", str(root / "artifacts")),
    ]
    log_path = root / "mlflow-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_healthy(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise TimeoutError(
        f"mlflow server not healthy in {START_TIMEOUT_S:g}s:\n{log_path.read_text()[-3000:]}"
    )
