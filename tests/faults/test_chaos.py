"""Chaos: 1,000 commands over 4 devices while device workers, the server worker, the API and
Redis are SIGKILLed and restarted at random; then drained and judged command by command.

Every accepted command must end in exactly one terminal state, the same in SQL and Redis;
no non-idempotent command may reach its device twice (the simulators' logs are the
witness); the run's lost, duplicated, stuck, mismatched and wrong-answer counts are all 0.
The driver is `bench/chaos.py` (`python -m bench.chaos` runs a longer one). Each run starts
its own Redis, which must restart on its own port, so these tests do not share the session's.
`CHAOS_SEED=<n>` replays a run's choices (the report prints the seed); timings still differ.
`-s` shows a run's report; each run also leaves it as `chaos-report.txt` in its folder,
beside the processes' logs and the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.chaos import ChaosConfig, run_chaos


def _config(redis_keeps_data: bool) -> ChaosConfig:
    seed = os.environ.get("CHAOS_SEED")
    return ChaosConfig(
        commands=1000,
        devices=4,
        redis_keeps_data=redis_keeps_data,
        seed=int(seed) if seed else None,
    )


def test_chaos_with_redis_keeping_its_data(tmp_path: Path) -> None:
    """Redis with an append-only file: a kill of it loses nothing it acknowledged."""
    result = run_chaos(_config(redis_keeps_data=True), tmp_path)
    print(result.report())
    assert result.drained, result.report()
    assert result.verdict.passed, result.report()


def test_chaos_with_redis_losing_its_data(tmp_path: Path) -> None:
    """Redis without persistence: every kill of it loses all live state and queues."""
    result = run_chaos(_config(redis_keeps_data=False), tmp_path)
    print(result.report())
    assert result.drained, result.report()
    assert result.verdict.passed, result.report()
