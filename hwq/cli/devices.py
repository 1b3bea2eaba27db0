"""`hwq devices list|show|add|remove|rename` over the API, and the group they belong to.

The group is shared: `hwq devices watch` (hwq.cli.watch) and `set|activate|deactivate`
(hwq.cli.hosts) join it too.
"""

from __future__ import annotations

from typing import Any

import click

from hwq.cli.formatting import echo_json, format_table, table_rows
from hwq.cli.watch import watch
from hwq.http_client import ApiClient

DEVICE_COLUMNS = (
    "name", "transport", "address", "codec", "host", "presence", "state", "queue_depth"
)  # fmt: skip


@click.group()
def devices() -> None:
    """List, register, change and remove devices."""


devices.add_command(watch)


@devices.command("list")
def list_devices() -> None:
    """All devices as a table, and how far the ledger trails the live state."""
    client = ApiClient.from_env()
    click.echo(format_table(DEVICE_COLUMNS, table_rows(client.list_devices(), DEVICE_COLUMNS)))
    click.echo(ledger_footer(client.health()), err=True)


def ledger_footer(health: dict[str, Any]) -> str:
    """One line on the recorder's lag, from the API's health report."""
    pending, lag_s = health.get("recorder_pending"), health.get("recorder_lag_s")
    if pending is None:
        return "ledger: lag unknown (Redis unreachable)"
    if not pending:
        return "ledger: up to date"
    return f"ledger: {pending} transitions not yet recorded, the oldest {lag_s:.1f} s old"


@devices.command("show")
@click.argument("name")
def show_device(name: str) -> None:
    """One device as JSON."""
    echo_json(ApiClient.from_env().get_device(name))


@devices.command("add")
@click.argument("name")
@click.option("--address", help="pyserial URL or port, e.g. /dev/ttyUSB0; needed for serial.")
@click.option(
    "--transport", type=click.Choice(["serial", "http-poll"]), default="serial", show_default=True
)
@click.option("--baudrate", type=int, help="Serial speed [API: 115200].")
@click.option("--codec", type=click.Choice(["line", "raw", "frame"]), help="[API: line]")
@click.option("--host", help="The host agent that serves it [API: the API's machine].")
@click.option("--options", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Serial setting or allowance, e.g. parity=E (repeatable).")  # fmt: skip
def add_device(
    name: str,
    address: str | None,
    transport: str,
    baudrate: int | None,
    codec: str | None,
    host: str | None,
    option_pairs: tuple[str, ...],
) -> None:
    """Register device NAME."""
    from hwq.cli.hosts import parse_options

    if transport == "serial" and not address:
        raise click.UsageError("a serial device needs --address (a port or pyserial URL)")
    spec: dict[str, object] = {"name": name, "transport": transport, "address": address}
    spec.update({k: v for k, v in {"baudrate": baudrate, "codec": codec, "host": host}.items()
                 if v is not None})  # fmt: skip
    if option_pairs:
        spec["options"] = parse_options(option_pairs)
    device = ApiClient.from_env().register_device(spec)
    click.echo(f"added device {device.get('name', name)}")


@devices.command("remove")
@click.argument("name")
def remove_device(name: str) -> None:
    """Remove device NAME; refused while it has commands queued or in flight."""
    ApiClient.from_env().delete_device(name)
    click.echo(f"removed device {name}")


@devices.command("rename")
@click.argument("old")
@click.argument("new")
def rename_device(old: str, new: str) -> None:
    """Rename device OLD to NEW; refused while it has commands queued or in flight."""
    ApiClient.from_env().update_device(old, {"name": new})
    click.echo(f"renamed device {old} to {new}")


COMMANDS: list[click.Command] = [devices]
