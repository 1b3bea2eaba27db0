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
@click.option(
    "--simulate",
    default=None,
    metavar="VID:PID:SERIAL",
    help="Also run a simulated scpi device behind a USB adapter with these ids, in this "
    "process (where a pseudo-terminal cannot come from elsewhere, as in a container).",
)
def host(name: str | None, ports_dir: Path | None, simulate: str | None) -> None:
    """Run the host agent: publish this machine's serial ports and run its device workers."""
    from worker_host.host_agent import HostAgent
    from worker_host.sim_usb import SimulatedUsbAdapter, UsbIdentity
    from worker_host.worker_child import ForkServerStarter, default_starter

    settings = _settings()
    if name:
        settings = settings.with_overrides(hostname=name)
    _logging(settings, role="host", host=settings.hostname)
    adapter = None
    if simulate is not None:
        try:
            identity = UsbIdentity.parse(simulate)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--simulate") from None
        ports_dir = ports_dir or settings.home / "dev" / "by-id"
        sim_name = f"sim-{identity.serial_number}"
        adapter = SimulatedUsbAdapter(
            "scpi", sim_name, identity, ports_dir, settings.home / "sim" / f"{sim_name}.log"
        )
    # Before any thread or connection: the fork server starts from a clean interpreter and
    # imports what the workers need while the agent gets going.
    starter = default_starter()
    if isinstance(starter, ForkServerStarter):
        starter.warm_up()
    try:
        if adapter is not None:
            adapter.plug()
        HostAgent(settings, starter, ports_dir.resolve() if ports_dir else None).run()
    finally:
        if adapter is not None:
            adapter.unplug()


COMMANDS: list[click.Command] = [host]
