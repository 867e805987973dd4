"""User-facing errors: one message that says what is wrong and how to fix it.

The CLI and the stage scripts catch :class:`PlutoDvcError`, print its message (no traceback unless
``--traceback`` / ``PLUTO_DVC_TRACEBACK=1``) and exit non-zero.
"""

from __future__ import annotations


class PlutoDvcError(Exception):
    """Base class of every error meant for the user rather than the developer."""

    exit_code = 2


class ParamsError(PlutoDvcError):
    """params.yaml is malformed: unknown key, wrong type or out-of-range value."""


class DataError(PlutoDvcError):
    """A nuPlan log or map on disk is missing, truncated or not in the nuPlan format."""
