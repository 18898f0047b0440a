"""Test-only fault injection for trainer processes (see `sitecustomize.py` here)."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SLOW = "KUBESFT_TEST_SLOW_STEPS"
STALL = "KUBESFT_TEST_STALL_AFTER_STEP"
NAN = "KUBESFT_TEST_NAN_AFTER_STEP"
