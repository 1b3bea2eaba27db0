"""Which commands an API process counts as just accepted."""

from __future__ import annotations

import time

from tasks.recently_accepted import RecentlyAccepted


def test_an_accepted_command_is_recent_until_its_time_is_up() -> None:
    recent = RecentlyAccepted(recent_s=0.2)
    recent.add("a")
    assert "a" in recent
    assert "b" not in recent
    time.sleep(0.25)
    assert "a" not in recent


def test_the_oldest_are_forgotten_beyond_the_limit() -> None:
    recent = RecentlyAccepted(limit=3)
    for command_id in "abcd":
        recent.add(command_id)
    assert "a" not in recent
    assert all(command_id in recent for command_id in "bcd")


def test_only_strings_are_command_ids() -> None:
    recent = RecentlyAccepted()
    recent.add("1")
    assert 1 not in recent
