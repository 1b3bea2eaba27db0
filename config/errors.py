"""The root of hwq's one exception hierarchy, and the error a bad setting raises.

They live here because `config` is the bottom layer and imports nothing else of hwq; every
other error class is in `tasks/errors.py`, which re-exports these two.
"""

from __future__ import annotations


class HwqError(Exception):
    """Root of every error hwq raises on purpose."""

    status = 500
    title = "Internal error"


class ConfigError(HwqError):
    """A setting has a bad value; the message names the variable."""

    title = "Bad configuration"
