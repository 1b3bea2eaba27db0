"""The counts behind the caps on held waits."""

from __future__ import annotations

import pytest

from api.held_waits import HeldWaits, WaitRefused
from tasks.errors import ServiceUnavailable, TooManyWaits


def test_a_token_past_its_cap_is_refused_with_429_and_others_still_pass() -> None:
    waits = HeldWaits(most=10, most_per_token=1)
    with waits.hold("a"):
        with pytest.raises(WaitRefused) as refused, waits.hold("a"):
            pass
        assert isinstance(refused.value.problem, TooManyWaits)
        assert refused.value.retry_after_s > 0
        with waits.hold("b"):
            assert waits.held == 2
    assert waits.held == 0


def test_past_the_overall_cap_every_token_is_refused_with_503() -> None:
    waits = HeldWaits(most=1, most_per_token=5)
    with waits.hold("a"):
        with pytest.raises(WaitRefused) as refused, waits.hold("b"):
            pass
        assert isinstance(refused.value.problem, ServiceUnavailable)
    with waits.hold("b"):
        assert waits.held == 1


def test_a_place_is_given_back_when_the_wait_fails() -> None:
    waits = HeldWaits(most=1, most_per_token=1)
    with pytest.raises(RuntimeError), waits.hold("a"):
        raise RuntimeError("redis went away")
    with waits.hold("a"):
        assert waits.held == 1
