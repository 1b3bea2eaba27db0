"""One typed command shape across the layers: a misspelt key is a type error, not a KeyError
on a device; and the live hash reads back as the values that went in."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api as mypy_api

from tasks.command_record import command_from_redis, public_view, to_redis_fields
from tasks.command_values import CommandValues

REPO = Path(__file__).resolve().parents[2]

# One use of the command per layer it passes through, each with its key spelt as given.
LAYERS = """
from tasks.command_values import CommandValues
from tasks.db.ledger import command_row, command_view
from tasks.db.models import CommandRow
from tasks.live_store import LiveStore
from tasks.transition_script import TransitionResult


def device_runtime(claim: TransitionResult) -> object:
    assert claim.values is not None
    return claim.values["{payload}"]


def ledger(row: CommandRow) -> object:
    return command_view(row)["{timeout_s}"]


def api(values: CommandValues) -> object:
    return command_row(values)


def submission() -> CommandValues:
    return {{"{timeout_s}": 5.0,
        "id": "c", "device": "d", "user": "u", "kind": "line", "payload": "*IDN?",
        "read": None, "expires_s": None, "idempotent": False,
        "analysis": None, "attempts": 0, "created_at": "2026-01-01T00:00:00.000000Z",
    }}


def live_store(live: LiveStore) -> object:
    values = live.get("c")
    assert values is not None
    live.move("c", fields={{"{error}": "port gone"}})
    return values["{payload}"]
"""


def _mypy(tmp_path: Path, **keys: str) -> tuple[Path, str, int]:
    source = tmp_path / "layers.py"
    source.write_text(textwrap.dedent(LAYERS.format(**keys)))
    stdout, stderr, status = mypy_api.run(
        [
            "--no-incremental",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--python-version=3.11",
            str(source),
        ]
    )
    return source, stdout + stderr, status


def test_the_right_keys_type_check(tmp_path: Path) -> None:
    _, output, status = _mypy(tmp_path, payload="payload", timeout_s="timeout_s", error="error")
    assert status == 0, output


def test_a_misspelt_key_fails_in_mypy_in_every_layer(tmp_path: Path) -> None:
    misspelt = ("paylaod", "timeout", "eror")
    source, output, status = _mypy(
        tmp_path, payload=misspelt[0], timeout_s=misspelt[1], error=misspelt[2]
    )
    assert status == 1, output
    # The device runtime's and the live store's reads, the ledger's view, the submission and
    # a transition's stored fields: every line with a misspelt key is reported.
    lines = source.read_text().splitlines()
    typo_lines = [n for n, line in enumerate(lines, 1) if any(f'"{k}"' in line for k in misspelt)]
    assert len(typo_lines) == 5
    for number in typo_lines:
        assert f"layers.py:{number}: error" in output, (lines[number - 1], output)


def test_the_live_hash_reads_back_as_the_values_stored() -> None:
    values: CommandValues = {
        "id": "c1",
        "device": "sim0",
        "user": "ada",
        "kind": "raw",
        "payload": "KklETj8K",
        "read": {"until": "Cg==", "idle_ms": 50},
        "timeout_s": 2.5,
        "expires_s": None,
        "idempotent": True,
        "analysis": {"analyzer": "manual", "value": None},
        "attempts": 0,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "state": "queued",
        "cancel": True,
        "restored": True,
    }
    read_back = command_from_redis(to_redis_fields(values))
    assert read_back == values
    # Flags come back as booleans, not as the "1" the hash holds.
    assert read_back["cancel"] is True and read_back["restored"] is True
    assert public_view(read_back)["timeout_s"] == 2.5
