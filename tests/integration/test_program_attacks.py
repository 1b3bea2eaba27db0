"""Each hostile program of bench/sandbox_attacks.py is contained by its own mechanism, reported
with its own error, and contained within its timeout + 2 s: the kill, the refusal or the cut
happens by then, which is what bounds what a program can take from its host (not a speed
figure: the programs that are refused at once take a fraction of a second)."""

from __future__ import annotations

import re

import pytest

from bench.sandbox_attacks import CONTAINED_WITHIN_S, Attack, attacks, confined, launch

CONFINED = confined()


def _name(attack: Attack) -> str:
    return attack.name.replace(" ", "-")


@pytest.mark.parametrize("attack", attacks(), ids=_name)
def test_the_attack_is_contained_within_its_timeout_and_2_s(attack: Attack) -> None:
    if attack.needs_confinement and not CONFINED:
        pytest.skip("this machine refuses the sandbox's namespaces (see the README)")
    result, seconds = launch(attack)
    assert attack.stopped_by(result) is not None, result
    assert seconds <= attack.timeout_s + CONTAINED_WITHIN_S, (seconds, result)


def test_each_attack_is_stopped_and_reported_in_its_own_way() -> None:
    chosen = [a for a in attacks() if CONFINED or not a.needs_confinement]
    outcomes = [launch(attack)[0] for attack in chosen]
    mechanisms = [a.stopped_by(r) for a, r in zip(chosen, outcomes, strict=True)]
    assert None not in mechanisms, outcomes
    assert len(set(mechanisms)) == len(chosen), mechanisms
    # What the command's result says tells the attacks apart too: the error, or the stream cut
    # short, or the exception (and its errno) that ended the program.
    reports = [
        str(r.get("error") or r.get("truncated") or str(r["stderr"]).strip().splitlines()[-1])
        for r in outcomes
    ]
    kinds = {re.match(r"[^:]*(: \[Errno \d+\])?", report).group(0) for report in reports}  # type: ignore[union-attr]
    assert len(kinds) == len(chosen), reports
