"""The commands this API process accepted in the last minute.

A long-poll on one of them may block on its wake stream from the start: its live state is
surely in Redis, and the stream gets an entry the moment it settles (or already has one).
For any other command the first look reads the state, since a command that left Redis long
ago has no wake stream left to wake anyone.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

# How long an accepted command counts as recent; a client's wait follows its submit at once.
RECENT_S = 60.0
# At most this many are remembered, the oldest forgotten first.
MAX_REMEMBERED = 10_000


class RecentlyAccepted:
    """Ids of recently accepted commands, forgotten after RECENT_S."""

    def __init__(self, recent_s: float = RECENT_S, limit: int = MAX_REMEMBERED) -> None:
        self.recent_s = recent_s
        self.limit = limit
        self._accepted: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, command_id: str) -> None:
        """Remember that this process accepted `command_id` just now."""
        now = time.monotonic()
        with self._lock:
            self._accepted[command_id] = now
            while self._accepted:
                oldest, at = next(iter(self._accepted.items()))
                if len(self._accepted) <= self.limit and now - at < self.recent_s:
                    break
                del self._accepted[oldest]

    def __contains__(self, command_id: object) -> bool:
        if not isinstance(command_id, str):
            return False
        with self._lock:
            at = self._accepted.get(command_id)
        return at is not None and time.monotonic() - at < self.recent_s
