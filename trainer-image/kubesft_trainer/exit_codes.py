"""Exit codes of the trainer image, shared by every subcommand.

The operator's Job `podFailurePolicy` fails fast on INVALID and NUMERICAL_INSTABILITY
(retrying cannot fix a bad spec, bad data or a diverging run), ignores PREEMPTED (not the
job's fault: it does not count against `spec.retry.maxRestarts`), and lets the Job's backoff
retry anything else (RETRYABLE, HUNG, signals).
"""

from __future__ import annotations

OK = 0
"""Done; results are in the output directory and the termination message."""
RETRYABLE = 1
"""Something outside the user's control failed (network, storage, a bug); try again."""
INVALID = 2
"""Bad configuration or data: the user must change the spec or the dataset."""
HUNG = 3
"""No optimizer step for `spec.training.hangTimeoutSeconds`: retried from the last checkpoint."""
NUMERICAL_INSTABILITY = 4
"""A non-finite loss or gradient norm: the same data and settings would diverge again."""
PREEMPTED = 75
"""SIGTERM honoured: a checkpoint at the step boundary, then exit (sysexits' EX_TEMPFAIL)."""


class UserError(Exception):
    """A problem the user must fix; its message names the field and says what to change.

    The command line prints it as one line on stderr (no traceback) and exits INVALID.
    """
