"""Test-only fault injection for trainer processes (see `sitecustomize.py` here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent
SLOW = "KUBESFT_TEST_SLOW_STEPS"
STALL = "KUBESFT_TEST_STALL_AFTER_STEP"
NAN = "KUBESFT_TEST_NAN_AFTER_STEP"
SLEEP = "KUBESFT_TEST_SLEEP_AFTER_STEP"


@contextmanager
def in_trainer_pods(node_runner: Any, name: str, value: str) -> Iterator[None]:
    """Trainer pods the node runner starts inside the block load the fault injection with
    `name`=`value`; both are unset after it (pods already started keep them)."""
    node_runner.set_image_env("PYTHONPATH", str(FOLDER))
    node_runner.set_image_env(name, value)
    try:
        yield
    finally:
        node_runner.set_image_env(name, None)
        node_runner.set_image_env("PYTHONPATH", None)
