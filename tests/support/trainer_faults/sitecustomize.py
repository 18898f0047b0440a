"""Faults injected into a trainer process by tests; product code never imports this.

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one,
so a test puts this folder first on the trainer's PYTHONPATH (`FAULTS_PYTHONPATH`) and sets
one of these variables (each a step number or seconds):
- KUBESFT_TEST_SLOW_STEPS=S: each optimizer step takes S seconds longer, so that a signal
  sent "mid-run" lands between steps of a tiny model's otherwise millisecond-long steps;
- KUBESFT_TEST_STALL_AFTER_STEP=N: step N completes (reported, evaluated, checkpointed), then
  step N+1 blocks the main thread, as a collective whose peer died does;
- KUBESFT_TEST_NAN_AFTER_STEP=N: step N completes, then a trainable weight becomes NaN as
  step N+1 starts, so that step diverges for real (loss and gradients non-finite);
- KUBESFT_TEST_SLEEP_AFTER_STEP=N: step N completes (with its evaluation and checkpoint),
  then the process sleeps for an hour, parked at a known point for a test to kill it.
"""

from __future__ import annotations

import os
import time
from typing import Any

SLOW = "KUBESFT_TEST_SLOW_STEPS"
STALL = "KUBESFT_TEST_STALL_AFTER_STEP"
NAN = "KUBESFT_TEST_NAN_AFTER_STEP"
SLEEP = "KUBESFT_TEST_SLEEP_AFTER_STEP"


def _install() -> None:
    from kubesft_trainer import loop

    report_progress, train_step = loop._report_progress, loop.train_step
    after = [0]  # the last step reported

    def faulty_report_progress(session: Any, step: int, *args: Any, **kwargs: Any) -> None:
        report_progress(session, step, *args, **kwargs)
        if os.environ.get(SLOW):
            time.sleep(float(os.environ[SLOW]))
        after[0] = step

    def faulty_train_step(session: Any, batches: Any) -> Any:
        if os.environ.get(NAN) == str(after[0]):
            weight = next(p for p in session.model.parameters() if p.requires_grad)
            with __import__("torch").no_grad():
                weight.fill_(float("nan"))
            print(f"{NAN}: a weight is NaN in step {after[0] + 1}", flush=True)
        if os.environ.get(SLEEP) == str(after[0]):
            print(f"{SLEEP}: sleeping after step {after[0]}", flush=True)
            time.sleep(3600)
        if os.environ.get(STALL) == str(after[0]):
            print(f"{STALL}: step {after[0] + 1} never returns", flush=True)
            while True:
                time.sleep(60)
        return train_step(session, batches)

    loop._report_progress = faulty_report_progress  # type: ignore[assignment]
    loop.train_step = faulty_train_step


if any(os.environ.get(name) for name in (SLOW, STALL, NAN, SLEEP)):
    _install()
