"""A `python` command on a serial device: allowed twice over, then run in the sandbox.

The device allows programs in its options (`options.python: true`, checked at submission
too) and its host in its own settings (`HWQ_ALLOW_PYTHON=true`): a host that does not ends
the command failed, saying so, before anything runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tasks.command_fit import allows_python
from tasks.errors import DeviceError, ReplyTimeout
from worker_host.exchange import DeviceExchange
from worker_host.program_device import ExchangeDevice
from worker_host.program_limits import ProgramLimits
from worker_host.program_sandbox import run_program

log = logging.getLogger("hwq.program")


class ProgramTimedOut(ReplyTimeout):
    """The program ran past its command's timeout and was killed; `result` has its output."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ProgramPolicy:
    """Whether this host runs device programs, and the limits each one gets."""

    allowed: bool = False
    limits: ProgramLimits = ProgramLimits()
    host: str = "this host"

    def check_allowed(self, device: str, config: dict[str, Any]) -> None:
        """DeviceError naming what forbids a program on this device here, if anything does."""
        if not self.allowed:
            raise DeviceError(
                f"host {self.host} does not allow python programs (set HWQ_ALLOW_PYTHON=true "
                "in its device workers' environment to allow them)"
            )
        if not allows_python(config):
            raise DeviceError(f"device {device} does not allow python programs (options.python)")

    def run(
        self,
        device: str,
        exchange: DeviceExchange,
        source: str,
        timeout_s: float,
        command_id: str,
    ) -> dict[str, Any]:
        """The program's `{stdout, stderr, exit_code}`; ProgramTimedOut when it overran."""
        program_device = ExchangeDevice(exchange)
        try:
            result = run_program(source, timeout_s, program_device, self.limits)
        finally:
            program_device.close()
        log.info("program ended", extra={"device": device, "command_id": command_id,
                                          "exit_code": result["exit_code"]})  # fmt: skip
        if str(result.get("error", "")).startswith("timed_out"):
            raise ProgramTimedOut(str(result["error"]), result)
        return result
