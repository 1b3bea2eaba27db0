"""What a polling device's agent does with a command: line, raw and frame commands go to its
serial port through the same exchange a device worker uses; python programs run in the program
sandbox (worker_host.program_sandbox) only when the agent was started with --allow-python,
reaching the port, if the agent serves one, through the sandbox's device broker. Every other
case is answered with an `error`, which ends the command failed.

pyserial and the exchange are imported only once a port is used, so an agent without one
needs nothing beyond the standard library.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("hwq.poll_agent")

PORT_KINDS = ("line", "raw", "frame")


class CommandRunner:
    """Runs one command and returns the reply's fields (None: no reply, it times out)."""

    def __init__(
        self,
        port: str | None = None,
        baudrate: int = 115200,
        codec: str = "line",
        line_ending: str = "\n",
        allow_python: bool = False,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.codec = codec
        self.line_ending = line_ending
        self.allow_python = allow_python
        self._exchange: Any = None

    def __call__(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to `command` (DESIGN §10's reply fields, or `error`)."""
        kind = command.get("kind")
        if kind == "python":
            return self._program(command)
        if kind not in PORT_KINDS:
            return {"error": f"this agent does not run {kind} commands"}
        if self.port is None:
            return {"error": "this agent serves no serial port (start it with --port)"}
        return self._on_port(command)

    def _on_port(self, command: dict[str, Any]) -> dict[str, Any] | None:
        from tasks.errors import DeviceError, ReplyTimeout

        try:
            exchange = self._ready_exchange()
            return dict(
                exchange.run(
                    command["kind"],
                    command["payload"],
                    float(command.get("timeout_s") or 5.0),
                    command.get("read"),
                    command_id=command["id"],
                )
            )
        except ReplyTimeout as e:
            # The server ends it timed_out when its timeout passes without a reply.
            log.warning("no reply in time", extra={"command_id": command["id"], "error": str(e)})
            return None
        except DeviceError as e:
            return {"error": str(e)}

    def _ready_exchange(self) -> Any:
        if self._exchange is None:
            from tasks.device_options import LINE_ENDINGS, DeviceProfile
            from worker_host.exchange import DeviceExchange
            from worker_host.port_address import PortAddress
            from worker_host.transport import SerialTransport

            assert self.port is not None
            transport = SerialTransport(PortAddress.parse(self.port), self.baudrate)
            profile = DeviceProfile(codec=self.codec, line_ending=LINE_ENDINGS[self.line_ending])
            self._exchange = DeviceExchange(transport, _noise, profile=profile)
        self._exchange.check_ready()
        return self._exchange

    def _program(self, command: dict[str, Any]) -> dict[str, Any] | None:
        if not self.allow_python:
            return {"error": "this agent does not run python programs (--allow-python)"}
        from tasks.errors import DeviceError
        from worker_host.program_device import ExchangeDevice
        from worker_host.program_sandbox import run_program

        timeout_s = float(command.get("timeout_s") or 5.0)
        device = None
        try:
            # The program reaches the device only through the sandbox's broker, as on a worker.
            if self.port is not None:
                device = ExchangeDevice(self._ready_exchange())
            result = run_program(str(command["payload"]), timeout_s, device)
        except DeviceError as e:
            return {"error": str(e)}
        finally:
            if device is not None:
                device.close()
        if str(result.get("error", "")).startswith("timed_out"):
            # Killed at its timeout: the server ends it timed_out, as a worker's would.
            log.warning("program timed out", extra={"command_id": command["id"]})
            return None
        return {
            "stdout": str(result.get("stdout", "")),
            "stderr": str(result.get("stderr", "")),
            "exit_code": int(result.get("exit_code", 0)),
        }

    def close(self) -> None:
        """Close the port, if one was opened."""
        if self._exchange is not None:
            self._exchange.transport.close()


def _noise(data: bytes) -> None:
    log.info("device sent outside a command", extra={"bytes": len(data)})
