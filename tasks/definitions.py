"""Task definitions: what a device worker and the server worker run for a command."""

from __future__ import annotations

from typing import Protocol

from celery import shared_task

from tasks.errors import HwqError


class CommandExecutor(Protocol):
    """Runs a command on the hardware; installed by the process that owns the port."""

    def execute(self, command_id: str) -> None:
        """Claim and run one command."""


class AnalysisRunner(Protocol):
    """Records a registered analyzer's verdict; installed by the server worker."""

    def analyze(self, command_id: str) -> None:
        """Analyse one responded command."""


_installed: dict[str, object] = {}


def install(role: str, implementation: object) -> None:
    """Plug in the executor or analysis runner of this worker process."""
    _installed[role] = implementation


def _installed_as(role: str) -> object:
    try:
        return _installed[role]
    except KeyError:
        raise HwqError(f"this worker has no {role} installed; is it the right kind?") from None


@shared_task(name="hwq.execute", ignore_result=True)
def execute_command(command_id: str) -> None:
    """Run one command on this worker's device."""
    executor: CommandExecutor = _installed_as("executor")  # type: ignore[assignment]
    executor.execute(command_id)


@shared_task(name="hwq.analyze", ignore_result=True)
def analyze_command(command_id: str) -> None:
    """Run the registered analyzer a command asked for."""
    runner: AnalysisRunner = _installed_as("analysis")  # type: ignore[assignment]
    runner.analyze(command_id)
