"""Analyzers in child processes: bounded in time, in the text they see, and in what they hold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.analysis import MAX_ANALYSED_CHARS, run_analyzer
from tasks.analysis_sandbox import AnalyzerPool

CATASTROPHIC = {"analyzer": "regex", "params": {"pattern": "^(a+)+$"}}


@pytest.fixture
def pool() -> Iterator[AnalyzerPool]:
    analyzers = AnalyzerPool(timeout_s=1.0)
    yield analyzers
    analyzers.close()


def test_a_catastrophic_pattern_is_stopped_and_the_next_analysis_runs(pool: AnalyzerPool) -> None:
    started = time.monotonic()
    verdict = pool.verdict(CATASTROPHIC, {"text": "a" * 36 + "!"})
    assert verdict == {
        "error": "analysis stopped: regex did not finish within 1 s",
        "passed": False,
    }
    assert time.monotonic() - started < 30  # not the hours the backtracking would take

    number = {"analyzer": "number", "params": {"min": 1, "max": 2}}
    assert pool.verdict(number, {"text": "1.5"}) == {"value": 1.5, "within": True, "passed": True}


def test_children_are_reused_and_carry_no_credentials(
    pool: AnalyzerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWQ_DATABASE_URL", "postgresql+psycopg://hwq:secret@db/hwq")
    equals = {"analyzer": "equals", "params": {"expected": "x"}}
    assert pool.verdict(equals, {"text": "x"}) == {"equal": True, "passed": True}
    (child,) = pool._idle
    assert pool.verdict(equals, {"text": "y"}) == {"equal": False, "passed": False}
    assert pool._idle == [child]
    environ = Path(f"/proc/{child.process.pid}/environ").read_bytes()
    assert b"secret" not in environ


def test_an_analyzer_sees_at_most_the_cap_and_says_it_was_cut() -> None:
    tail = {"analyzer": "regex", "params": {"pattern": "b$"}}
    long_reply = {"text": "a" * MAX_ANALYSED_CHARS + "b"}
    assert run_analyzer(tail, long_reply) == {
        "match": False,
        "groups": [],
        "passed": False,
        "truncated": True,
    }
    assert run_analyzer(tail, {"text": "ab"}) == {"match": True, "groups": [], "passed": True}


def test_an_unanchored_catastrophic_pattern_ends_in_a_timeout_verdict(pool: AnalyzerPool) -> None:
    pattern = {"analyzer": "regex", "params": {"pattern": "(a+)+$"}}
    verdict = pool.verdict(pattern, {"text": "a" * 40 + "b"})
    assert verdict == {
        "error": "analysis stopped: regex did not finish within 1 s",
        "passed": False,
    }
    expect = {"analyzer": "expect", "params": {"one_of": ["OK"]}}
    assert pool.verdict(expect, {"text": "OK"}) == {"value": "OK", "passed": True}
