"""How the trainer image ends: the exit-code table (`kubesft.api.report.ExitCode`) and the
error a user must fix.

The operator's Job `podFailurePolicy` fails fast on ExitCode.INVALID (retrying cannot fix
a bad spec or bad data) and lets the Job's backoff retry anything else.
"""

from __future__ import annotations

from kubesft.api.report import ExitCode

__all__ = ["ExitCode", "UserError"]


class UserError(Exception):
    """A problem the user must fix; its message names the field and says what to change.

    The command line prints it as one line on stderr (no traceback) and exits INVALID.
    """
