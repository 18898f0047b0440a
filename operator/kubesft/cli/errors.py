"""Failures a user of `kubesft` can act on: printed as one line, never as a traceback."""

from __future__ import annotations


class CLIError(Exception):
    """One line for stderr (the command exits 1); it says what failed and what to do."""
