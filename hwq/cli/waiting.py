"""Waiting in the terminal for a command to settle, for `hwq run` and `hwq commands show`.

The API holds a long-poll for a bounded time, so a longer wait is a series of them; on a
terminal the polls are shorter, so the state shown while waiting stays current.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from hwq.http_client import ApiClient
from tasks.lifecycle import is_settled_for_wait

# The API holds one long-poll (`?wait`) for at most this many seconds.
MAX_POLL_S = 60.0
# A terminal shows what a command is waiting in once it has waited this long...
PROGRESS_AFTER_S = 1.0
# ...and then polls this often, so the state it shows stays current.
PROGRESS_POLL_S = 5.0


def stderr_is_tty() -> bool:
    """Whether progress can be drawn: only a terminal, never a pipe or a log, gets it."""
    return sys.stderr.isatty()


def wait_for_command(
    client: ApiClient, command: dict[str, Any], wait_s: float, progress: bool = False
) -> dict[str, Any]:
    """Long-poll until the command settles or `wait_s` passes; `progress` shows it on stderr."""
    deadline = time.monotonic() + wait_s
    chunk = PROGRESS_AFTER_S if progress else MAX_POLL_S
    shown = False
    while not is_settled_for_wait(command):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        command = client.get_command(command["id"], wait=min(chunk, remaining))
        if progress and not is_settled_for_wait(command):
            click.echo(
                f"\r\033[Kwaiting for {command['id']} ({command['state']})…", err=True, nl=False
            )
            shown = True
            chunk = PROGRESS_POLL_S
    if shown:
        click.echo("\r\033[K", err=True, nl=False)
    return command
