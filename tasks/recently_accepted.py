"""The commands this API process accepted in the last minute.

A long-poll on one of them may block on its wake stream from the start: its live state is
surely in Redis, and the stream gets an entry the moment it settles (or already has one).
For any other command the first look reads the state, since a command that left Redis long
ago has no wake stream left to wake anyone.
"""

from __future__ import annotations

import threading

from cachetools import TTLCache

# How long an accepted command counts as recent; a client's wait follows its submit at once.
RECENT_S = 60.0
# At most this many are remembered, the oldest forgotten first.
MAX_REMEMBERED = 10_000


class RecentlyAccepted:
    """Ids of recently accepted commands, forgotten after RECENT_S."""

    def __init__(self, recent_s: float = RECENT_S, limit: int = MAX_REMEMBERED) -> None:
        self._accepted: TTLCache[str, bool] = TTLCache(maxsize=limit, ttl=recent_s)
        # cachetools' caches are not safe to share between threads on their own.
        self._lock = threading.Lock()

    def add(self, command_id: str) -> None:
        """Remember that this process accepted `command_id` just now."""
        with self._lock:
            self._accepted[command_id] = True

    def __contains__(self, command_id: object) -> bool:
        if not isinstance(command_id, str):
            return False
        with self._lock:
            return command_id in self._accepted
