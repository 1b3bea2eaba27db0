"""The `hwq` command: one subcommand per role and per client action."""

from __future__ import annotations

import click

from tasks.errors import HwqError


class HwqGroup(click.Group):
    """Turns hwq's own errors into one clear line and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand."""
        try:
            return super().invoke(ctx)
        except HwqError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=HwqGroup)
@click.version_option(package_name="hwq")
def main() -> None:
    """hwq: run commands on remote hardware, queued per device, answered and kept."""


def _register() -> None:
    from hwq.cli import (
        commands,
        devices,
        gateway_role,
        host_role,
        hosts,
        poll_device,
        roles,
        run,
        up,
    )

    for module in (roles, devices, run, commands, up, hosts, host_role, gateway_role, poll_device):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
