"""Exit codes of the trainer image, shared by every subcommand.

The operator's Job `podFailurePolicy` fails fast on INVALID (retrying cannot fix a bad
spec or bad data) and lets the Job's backoff retry anything else.
"""

from __future__ import annotations

OK = 0
"""Done; results are in the output directory and the termination message."""
RETRYABLE = 1
"""Something outside the user's control failed (network, storage, a bug); try again."""
INVALID = 2
"""Bad configuration or data: the user must change the spec or the dataset."""


class UserError(Exception):
    """A problem the user must fix; its message names the field and says what to change.

    The command line prints it as one line on stderr (no traceback) and exits INVALID;
    `reason` goes into the termination message (subclasses name their own).
    """

    reason = "InvalidInput"
