"""Run health: preemption, hangs and divergence, each ending the run with its own reason.

- **Preemption.** Kubernetes stops a pod (node drain, spot reclaim, priority preemption) by
  sending SIGTERM and waiting `terminationGracePeriodSeconds` before SIGKILL. The trainer
  notes the signal, finishes the optimizer step it is in, and at the step boundary every
  rank agrees (an all-reduce of the flag: a drained node's pods are signalled, the other
  nodes' are not) to write one checkpoint and exit `PREEMPTED`, which the Job's
  podFailurePolicy does not count as a failure. The next pod resumes at the next step.
- **Hangs.** A rank blocked in a collective (a dead peer, an NCCL hang) or a stuck data
  loader never returns to Python code that could notice, so a watchdog thread ends the
  process (`os._exit`) when no optimizer step, evaluation or checkpoint finished for
  `spec.training.hangTimeoutSeconds`, after writing the reason as the termination message.
  HUNG is retryable: the next pod resumes from the last checkpoint.
- **Divergence.** A non-finite loss or gradient norm stops the run before the step's
  weights can reach a checkpoint, so the last good checkpoint stays the latest; retrying
  would diverge the same way, so NUMERICAL fails the Job (see `exit_codes`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from kubesft.api.report import ExitCode, TrainerReason, TrainerTermination
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.termination import write_termination_message

if TYPE_CHECKING:  # the loop's Session holds a StopRequest and a HangWatchdog
    from kubesft_trainer.loop import Session


class RunStopped(Exception):
    """The run ends early for `reason`; the CLI writes it as the termination message."""

    reason = TrainerReason.TRAINING_ERROR
    exit_code = ExitCode.RETRYABLE

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class Preempted(RunStopped):
    """SIGTERM: a checkpoint at `step` was written; the next pod resumes after it."""

    reason = TrainerReason.PREEMPTED
    exit_code = ExitCode.PREEMPTED


class NumericalInstability(RunStopped):
    """The loss or gradient norm of `step` is not finite; its update never reached a checkpoint."""

    reason = TrainerReason.NUMERICAL_INSTABILITY
    exit_code = ExitCode.NUMERICAL_INSTABILITY


class StopRequest:
    """A SIGTERM noted by the handler and acted on at the next optimizer-step boundary.

    Installed around the training loop only: before it there is nothing to checkpoint, and
    the default action (exit 128+15) is right.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._note)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            print("SIGTERM: checkpointing after the current step", file=sys.stderr, flush=True)
        self.signal = signum

    def agreed(self, accelerator: Any) -> bool:
        """True on every rank when any rank was signalled (one all-reduce of a flag)."""
        import torch  # here: the CLI imports this module, and `prepare` never needs torch

        flag = torch.tensor([0 if self.signal is None else 1], device=accelerator.device)
        return bool(int(accelerator.reduce(flag, reduction="sum").item()) > 0)


def check_finite(step: int, loss: float, grad_norm: float | None, *, fp16: bool) -> None:
    """Raise NumericalInstability for a non-finite loss, or gradient norm.

    Under fp16 an infinite gradient norm is the loss scaler's overflow signal: the scaler
    skips that update and lowers its scale, so only the loss is checked there.
    """
    if not math.isfinite(loss):
        raise NumericalInstability(
            f"the training loss of step {step} is {loss}: lower spec.training.learningRate "
            "or spec.training.maxGradNorm, or check the data; the last good checkpoint is kept",
            step=step,
        )
    if grad_norm is not None and not math.isfinite(grad_norm) and not fp16:
        raise NumericalInstability(
            f"the gradient norm of step {step} is {grad_norm}: lower "
            "spec.training.learningRate or spec.training.maxGradNorm, or check the data; "
            "the last good checkpoint is kept",
            step=step,
        )


class HangWatchdog:
    """Ends the process when no `beat` arrives for `timeout_s` seconds.

    `on_hang(message)` must not return (the CLI's writes the termination message and
    calls `os._exit(HUNG)`): the main thread is stuck and cannot be interrupted.
    """

    def __init__(
        self,
        timeout_s: float,
        on_hang: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.on_hang = on_hang
        self.clock = clock
        self.poll_s = poll_s if poll_s is not None else min(5.0, max(timeout_s / 10, 0.05))
        self.step = 0
        self.last_beat = clock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hang-watchdog", daemon=True)

    def start(self, step: int) -> None:
        self.beat(step)
        self._thread.start()

    def beat(self, step: int) -> None:
        """Something finished at `step` (an optimizer step, an evaluation, a checkpoint)."""
        self.step, self.last_beat = step, self.clock()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_s):
            idle = self.clock() - self.last_beat
            if idle > self.timeout_s:
                self.on_hang(
                    f"no optimizer step for {idle:.0f} s after step {self.step} "
                    f"(spec.training.hangTimeoutSeconds is {self.timeout_s:g}): a rank is "
                    "stuck (a dead peer, a collective or the data loader); the next pod "
                    "resumes from the last checkpoint"
                )
                return


def exit_hung(write_message: Callable[[str], None]) -> Callable[[str], None]:
    """An `on_hang` that records the message, says it on stderr and ends the process HUNG."""

    def on_hang(message: str) -> None:
        print(f"Hung: {message}", file=sys.stderr, flush=True)
        try:
            write_message(message)
        finally:
            os._exit(ExitCode.HUNG)

    return on_hang


@contextlib.contextmanager
def guard_run(session: Session, config: TrainerConfig, step: int) -> Iterator[None]:
    """The training loop under the SIGTERM handler and the hang watchdog (`health.py`).

    A run stopped early (preempted, diverged) leaves its report and reason as the
    termination message before the exception reaches the CLI.
    """
    timeout = config.spec.training.hang_timeout_seconds
    if timeout:
        session.watchdog = HangWatchdog(
            timeout, exit_hung(lambda message: _hung(session, config, message))
        )
        session.watchdog.start(step)
    session.stop.install()
    try:
        yield
    except RunStopped as err:
        _stopped(session, config, err.reason, str(err))
        raise
    finally:
        session.stop.uninstall()
        if session.watchdog is not None:
            session.watchdog.stop()


def _hung(session: Session, config: TrainerConfig, message: str) -> None:
    """The termination message of a hung run, from the watchdog thread: the report so far,
    written to the file only (no status patch, tracker or plot that could block too)."""
    report = session.reporter.report() if session.reporter is not None else None
    fields = report.model_dump(exclude_none=True) if report is not None else {}
    summary = TrainerTermination.model_validate(
        {**fields, "phase": "Failed", "reason": TrainerReason.HUNG, "message": message}
    )
    write_termination_message(config.runtime.termination_log, summary)


def _stopped(session: Session, config: TrainerConfig, reason: TrainerReason, message: str) -> None:
    """Report and write the termination message of a run that ends before its last step."""
    # A preempted job goes on in the Job's next pod; the others end here.
    phase: Literal["Running", "Failed"] = (
        "Running" if reason == TrainerReason.PREEMPTED else "Failed"
    )
    summary = TrainerTermination(phase=phase, reason=reason, message=message)
    if session.reporter is not None:
        session.reporter.finish(summary)
    else:
        write_termination_message(config.runtime.termination_log, summary)
