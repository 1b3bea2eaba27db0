"""`hwq up`: the whole system on one machine, in the foreground."""

from __future__ import annotations

import click


@click.command()
@click.option("--sim", "sims", type=int, default=0, show_default=True, help="Simulated devices.")
@click.option("--port", type=int, default=None, help="API port (default 8000).")
@click.option("--flower-port", type=int, default=None, help="Flower port (default 5555).")
@click.option("--gateway-port", type=int, default=None, help="Socket.IO gateway port (3000).")
@click.option("--home", default=None, help="Folder for the database, tokens and logs (./var).")
def up(
    sims: int,
    port: int | None,
    flower_port: int | None,
    gateway_port: int | None,
    home: str | None,
) -> None:
    """Run the whole system on this machine until Ctrl-C."""
    from hwq.one_machine import run_up

    run_up(sims, port, flower_port, home, click.echo, gateway_port=gateway_port)


COMMANDS: list[click.Command] = [up]
