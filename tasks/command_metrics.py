"""Counts of finished commands and how long the done ones took, kept in Redis by the recorder.

The recorder sees every terminal transition exactly once (it acknowledges a batch in the
same MULTI that adds its counts, and a batch replayed after a crash was never counted), so
the counts are right however many API processes read them. They live beside the live state
under the key prefix:

- `P:metrics:finished` hash: terminal state → commands that ended so.
- `P:metrics:done_seconds` hash: `le:<bound>` → done commands whose submit→done time was at
  most that bound and above the one before (not cumulative), `sum` and `count`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks.command_record import parse_iso
from tasks.lifecycle import TERMINAL, State

# Upper bounds, in seconds, of the submit→done histogram: from a quick line command to the
# longest timeout a command may have (300 s).
DONE_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_INFINITY_FIELD = "le:+Inf"


def finished_key(prefix: str) -> str:
    """The hash of finished commands by terminal state."""
    return f"{prefix}:metrics:finished"


def done_seconds_key(prefix: str) -> str:
    """The hash of the submit→done histogram."""
    return f"{prefix}:metrics:done_seconds"


def bucket_field(seconds: float) -> str:
    """The histogram field a duration is counted in."""
    for bound in DONE_SECONDS_BUCKETS:
        if seconds <= bound:
            return f"le:{bound:g}"
    return _INFINITY_FIELD


def count_outcomes(
    pipe: Any,
    prefix: str,
    terminal: Iterable[dict[str, Any]],
    created_at: dict[str, str | None],
) -> None:
    """Queue on `pipe` the counts of a batch's terminal transitions.

    `created_at`: each command's submission time, to time the done ones; a command whose
    live state is gone already is counted but not timed.
    """
    for entry in terminal:
        pipe.hincrby(finished_key(prefix), entry["state"], 1)
        submitted = created_at.get(entry["id"])
        if entry["state"] != State.DONE.value or not submitted or not entry.get("at"):
            continue
        seconds = max(0.0, (parse_iso(entry["at"]) - parse_iso(submitted)).total_seconds())
        key = done_seconds_key(prefix)
        pipe.hincrby(key, bucket_field(seconds), 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)


def terminal_entries(decoded: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transitions of a batch that end a command."""
    return [entry for entry in decoded if entry["state"] in TERMINAL]


@dataclass(frozen=True)
class DoneSeconds:
    """The submit→done histogram: cumulative counts per upper bound, sum and count."""

    buckets: list[tuple[str, float]]
    total: float
    count: float


def read_outcomes(client: Any, prefix: str) -> tuple[dict[str, int], DoneSeconds]:
    """Finished counts by state (every terminal state, 0 when none) and the histogram."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(finished_key(prefix))
    pipe.hgetall(done_seconds_key(prefix))
    finished_raw, histogram_raw = pipe.execute()
    finished = {state.value: 0 for state in sorted(TERMINAL)}
    for state, count in finished_raw.items():
        finished[_text(state)] = int(count)
    histogram = {_text(k): float(v) for k, v in histogram_raw.items()}
    buckets: list[tuple[str, float]] = []
    running = 0.0
    for bound in DONE_SECONDS_BUCKETS:
        running += histogram.get(f"le:{bound:g}", 0.0)
        buckets.append((f"{bound:g}", running))
    running += histogram.get(_INFINITY_FIELD, 0.0)
    buckets.append(("+Inf", running))
    return finished, DoneSeconds(buckets, histogram.get("sum", 0.0), histogram.get("count", 0.0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
