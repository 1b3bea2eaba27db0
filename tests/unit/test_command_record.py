"""Times as hwq writes and reads them: ISO 8601 UTC with microseconds and a Z."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tasks.command_record import parse_iso, utc_now_iso

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_now_is_iso_8601_utc_with_microseconds() -> None:
    stamp = utc_now_iso()
    assert ISO_UTC.match(stamp), stamp
    assert abs(parse_iso(stamp) - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_written_time_reads_back_as_the_same_instant() -> None:
    assert parse_iso("2026-11-22T01:02:03.456789Z") == datetime(
        2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC
    )
    # A whole second keeps its six digits, so every stamp has one length and sorts as text.
    assert utc_now_iso().endswith("Z") and len(utc_now_iso()) == len("2026-11-22T01:02:03.000000Z")
