"""The ids of the commands a polling agent has started, kept on disk so that an agent killed
mid-command and started again still knows them: a command handed to it again is answered with
an error rather than run a second time (DESIGN §10: a polling device never runs one command
twice).

The server hands a collected command out once; it can come back only after the server lost
its live state and restored the command from its ledger. Each id is written and flushed to the
file before the command runs, so a kill at any moment after that leaves it recorded.

Standard library only, like the rest of the agent.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("hwq.poll_agent")

# Ids kept, the newest this many; the file is rewritten to them once it holds twice as many.
MAX_JOURNALED_IDS = 10_000
JOURNAL_SUFFIX = ".journal"


def default_journal_path(device: str) -> Path:
    """Where an agent keeps its journal unless told: beside hwq's home when HWQ_HOME is set,
    else in the user's state folder (XDG_STATE_HOME, or ~/.local/state)."""
    home = os.environ.get("HWQ_HOME")
    if home:
        folder = Path(home)
    else:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        folder = Path(state) / "hwq"
    return folder / f"poll-{device}{JOURNAL_SUFFIX}"


class StartedJournal:
    """Command ids started by one agent, read from and appended to one file."""

    def __init__(self, path: Path, keep: int = MAX_JOURNALED_IDS) -> None:
        self.path = path
        self.keep = keep
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines = 0
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    self._ids[line.strip()] = None
                    self._lines += 1
            self._trim()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def record(self, command_id: str) -> None:
        """Write `command_id` down for good before its command runs; OSError if it cannot be."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(command_id + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        self._ids[command_id] = None
        self._lines += 1
        self._trim()
        if self._lines > 2 * self.keep:
            self._rewrite()

    def _trim(self) -> None:
        while len(self._ids) > self.keep:
            self._ids.popitem(last=False)

    def _rewrite(self) -> None:
        """Keep only the newest ids: written aside, then moved over the journal at once."""
        fresh = self.path.with_name(self.path.name + ".new")
        fresh.write_text("".join(f"{i}\n" for i in self._ids), encoding="utf-8")
        os.replace(fresh, self.path)
        self._lines = len(self._ids)
        log.info("journal compacted", extra={"path": str(self.path), "ids": self._lines})
