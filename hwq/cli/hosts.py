"""`hwq ports`, `hwq hosts`, and `hwq devices set|activate|deactivate`: hosts and connections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from hwq.cli.devices import devices
from hwq.cli.formatting import format_table, json_or_text
from hwq.http_client import ApiClient

PORT_COLUMNS = ("host", "path", "by-id", "vid:pid", "serial", "description", "device")
HOST_COLUMNS = ("name", "online", "last_seen", "devices")


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`--options k=v …` as a dict; a value is JSON when it parses (`8`, `true`), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--options")
        options[key.strip()] = json_or_text(value)
    return options


def _port_row(host: str, port: dict[str, Any]) -> list[object]:
    vid, pid = port.get("vid"), port.get("pid")
    by_id = port.get("by_id")
    return [
        host,
        port.get("path"),
        by_id.rsplit("/", 1)[-1] if isinstance(by_id, str) else None,
        f"{vid}:{pid}" if vid and pid else None,
        port.get("serial_number"),
        port.get("description"),
        port.get("device"),
    ]


@click.command("ports")
@click.option("--host", "hosts", multiple=True, help="Only this host's ports (repeatable).")
def ports(hosts: tuple[str, ...]) -> None:
    """Serial ports the host agents see, and the device bound to each."""
    client = ApiClient.from_env()
    names = list(hosts) or [h["name"] for h in client.list_hosts() if h.get("online")]
    rows = [_port_row(host, port) for host in names for port in client.host_ports(host)]
    click.echo(format_table(PORT_COLUMNS, rows))
    if not names:
        click.echo("no host agent is online (start one with `hwq host`)", err=True)


@click.command("hosts")
def list_hosts() -> None:
    """Host agents, whether each is online, and the devices it serves."""
    items = ApiClient.from_env().list_hosts()
    rows = [[h["name"], h["online"], h.get("last_seen"), ", ".join(h["devices"])] for h in items]
    click.echo(format_table(HOST_COLUMNS, rows))


@devices.command("set")
@click.argument("name")
@click.option("--address", help="pyserial URL, port path or usb:VID:PID[:SERIAL].")
@click.option("--baudrate", type=int, help="Serial speed.")
@click.option("--codec", type=click.Choice(["line", "raw", "frame"]))
@click.option("--host", help="The host agent that serves it.")
@click.option(
    "--options",
    "option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Serial setting or allowance, e.g. parity=E (repeatable); KEY=null removes one.",
)
def set_device(
    name: str,
    address: str | None,
    baudrate: int | None,
    codec: str | None,
    host: str | None,
    option_pairs: tuple[str, ...],
) -> None:
    """Change device NAME's settings; its worker picks them up without a restart."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {"address": address, "baudrate": baudrate, "codec": codec, "host": host}.items()
        if v is not None
    }
    if not changes and not option_pairs:
        raise click.UsageError("nothing to change: give --address, --baudrate, --codec, --host "
                               "or --options")  # fmt: skip
    client = ApiClient.from_env()
    if option_pairs:
        # The options given change; the others stay as they are.
        options = {**client.get_device(name).get("options", {}), **parse_options(option_pairs)}
        changes["options"] = {k: v for k, v in options.items() if v is not None}
    client.update_device(name, changes)
    click.echo(f"changed device {name}")


@devices.command("activate")
@click.argument("name")
def activate_device(name: str) -> None:
    """Open device NAME's connection: its host starts its worker."""
    device = ApiClient.from_env().activate_device(name)
    presence = device.get("presence")
    # The answer comes before the host agent has started the worker: say what comes next.
    starting = "; its host starts its worker within seconds" if presence == "offline" else ""
    click.echo(f"activated device {name} (presence {presence}{starting})")


@devices.command("deactivate")
@click.argument("name")
def deactivate_device(name: str) -> None:
    """Close device NAME's connection and release its port; queued commands wait."""
    device = ApiClient.from_env().deactivate_device(name)
    click.echo(f"deactivated device {name} (presence {device.get('presence')})")


COMMANDS: list[click.Command] = [ports, list_hosts]
