"""`hwq poll-device`: the agent an HTTP-polling device runs (DESIGN §10).

It imports only the standard library and click (and pyserial once it opens a port), so it
runs on a small board that has none of the server's dependencies.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from config.logging import configure_logging


class _Stopping(Exception):
    """SIGTERM or SIGINT arrived while a poll was waiting."""


@click.command("poll-device")
@click.argument("name")
@click.option("--url", envvar="HWQ_URL", required=True, help="The API's URL (HWQ_URL).")
@click.option(
    "--token",
    envvar="HWQ_TOKEN",
    required=True,
    help="The device's own token (HWQ_TOKEN): hwq token create --role device.",
)
@click.option(
    "--port",
    "serial_url",
    default=None,
    help="Serial port (any pyserial URL) the device's commands go to.",
)
@click.option("--baudrate", type=int, default=115200, show_default=True)
@click.option(
    "--codec",
    type=click.Choice(["line", "raw", "frame"]),
    default="line",
    show_default=True,
    help="How the device on the port speaks.",
)
@click.option(
    "--line-ending", type=click.Choice(["lf", "crlf", "cr"]), default="lf", show_default=True
)
@click.option(
    "--allow-python",
    is_flag=True,
    help="Run python commands in the program sandbox (off by default).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(1, 60),
    default=30.0,
    show_default=True,
    help="Seconds each poll may be held by the API.",
)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File of the commands started, so a restarted agent never runs one twice "
    "[default: $HWQ_HOME/poll-NAME.journal, else ~/.local/state/hwq/poll-NAME.journal].",
)
@click.option("--json-logs", is_flag=True, help="Log JSON lines instead of key=value.")
def poll_device(
    name: str,
    url: str,
    token: str,
    serial_url: str | None,
    baudrate: int,
    codec: str,
    line_ending: str,
    allow_python: bool,
    wait_s: float,
    journal_path: Path | None,
    json_logs: bool,
) -> None:
    """Take NAME's commands from the API by polling, run them, and post the replies."""
    from hwq.poll_agent import ApiConnection, PollAgent
    from hwq.poll_journal import StartedJournal, default_journal_path
    from hwq.poll_runner import CommandRunner

    configure_logging("INFO", json_logs, role="poll-device", device=name)
    endings = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
    runner = CommandRunner(serial_url, baudrate, codec, endings[line_ending], allow_python)
    journal = StartedJournal(journal_path or default_journal_path(name))
    agent = PollAgent(name, ApiConnection(url, token), runner, wait_s, journal)

    def stop(signum: int, _frame: FrameType | None) -> None:
        agent.stop.set()
        # A poll may be held for its whole wait: cut it. A command being run or a reply being
        # posted is left to finish.
        if agent.polling:
            raise _Stopping

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    except _Stopping:
        pass
    finally:
        runner.close()


COMMANDS = [poll_device]
