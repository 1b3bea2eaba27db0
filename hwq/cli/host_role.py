"""`hwq host`: the host agent of a machine beside hardware."""

from __future__ import annotations

from pathlib import Path

import click

from hwq.cli.roles import _logging, _settings


@click.command()
@click.option(
    "--name", default=None, help="This host's name (default: HWQ_HOSTNAME or the hostname)."
)
@click.option(
    "--ports-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also list the simulated USB adapters announced in this folder (`hwq sim --usb`).",
)
def host(name: str | None, ports_dir: Path | None) -> None:
    """Run the host agent: publish this machine's serial ports and run its device workers."""
    from worker_host.host_agent import HostAgent
    from worker_host.worker_child import ForkServerStarter, default_starter

    settings = _settings()
    if name:
        settings = settings.with_overrides(hostname=name)
    _logging(settings, role="host", host=settings.hostname)
    # Before any thread or connection: the fork server starts from a clean interpreter and
    # imports what the workers need while the agent gets going.
    starter = default_starter()
    if isinstance(starter, ForkServerStarter):
        starter.warm_up()
    HostAgent(settings, starter, ports_dir.resolve() if ports_dir else None).run()


COMMANDS: list[click.Command] = [host]
