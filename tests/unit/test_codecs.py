"""Line framing and raw reply assembly, on bytes alone."""

from __future__ import annotations

import pytest

from worker_host.codecs import DEFAULT_RAW_IDLE_MS, LineFramer, RawReplyAssembler, decode_line


def test_line_framer_joins_a_line_split_across_reads() -> None:
    framer = LineFramer()
    assert framer.feed(b"HWQ,S") == []
    assert framer.feed(b"IM,sim0\nOK\npart") == ["HWQ,SIM,sim0", "OK"]
    assert framer.pending == b"part"
    assert framer.feed(b"ial\n") == ["partial"]


def test_line_framer_strips_crlf_and_keeps_empty_lines() -> None:
    assert LineFramer().feed(b"one\r\n\r\ntwo\n") == ["one", "", "two"]


def test_line_framer_replaces_invalid_utf8() -> None:
    assert LineFramer().feed("µ".encode() + b"\xff\n") == ["µ\ufffd"]


def test_line_framer_custom_terminator_and_encode() -> None:
    framer = LineFramer(b"\r")
    assert framer.encode("*IDN?") == b"*IDN?\r"
    assert framer.feed(b"a\rb\r") == ["a", "b"]
    with pytest.raises(ValueError):
        LineFramer(b"")


def test_decode_line_strips_only_line_breaks() -> None:
    assert decode_line(b"  1.5 \r\n") == "  1.5 "


def test_raw_until_includes_terminator_and_keeps_leftover() -> None:
    raw = RawReplyAssembler(until=b"\r\n")
    raw.feed(b"abc\r")
    assert not raw.complete(10.0)
    raw.feed(b"\nrest")
    assert raw.complete(0.0)
    assert raw.reply == b"abc\r\n"
    assert raw.leftover == b"rest"


def test_raw_nbytes_ends_at_the_count() -> None:
    raw = RawReplyAssembler(nbytes=4)
    raw.feed(b"ab")
    assert not raw.complete(0.0)
    raw.feed(b"cdef")
    assert raw.complete(0.0)
    assert (raw.reply, raw.leftover) == (b"abcd", b"ef")


def test_raw_first_rule_met_wins() -> None:
    raw = RawReplyAssembler(until=b";", nbytes=3)
    raw.feed(b"a;bcd")
    assert (raw.reply, raw.leftover) == (b"a;", b"bcd")
    raw = RawReplyAssembler(until=b";", nbytes=3)
    raw.feed(b"abcd;")
    assert (raw.reply, raw.leftover) == (b"abc", b"d;")


def test_raw_idle_needs_a_byte_and_the_gap() -> None:
    raw = RawReplyAssembler(idle_ms=100)
    assert not raw.complete(5.0)
    assert raw.wait_s(0.0) is None
    raw.feed(b"x")
    assert not raw.complete(0.05)
    assert raw.wait_s(0.04) == pytest.approx(0.06)
    assert raw.complete(0.1)
    assert (raw.reply, raw.leftover) == (b"x", b"")


def test_raw_defaults_to_idle_gap() -> None:
    raw = RawReplyAssembler()
    assert raw.idle_ms == DEFAULT_RAW_IDLE_MS == 50
    raw.feed(b"data")
    assert raw.complete(0.05)


def test_raw_incomplete_reply_is_everything_so_far() -> None:
    raw = RawReplyAssembler(until=b"END")
    raw.feed(b"partial EN")
    assert not raw.complete(1.0)
    assert (raw.reply, raw.leftover) == (b"partial EN", b"")


@pytest.mark.parametrize("kwargs", [{"until": b""}, {"nbytes": 0}, {"idle_ms": -1}])
def test_raw_rejects_rules_that_can_never_end(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RawReplyAssembler(**kwargs)  # type: ignore[arg-type]
