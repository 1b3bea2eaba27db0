"""Finding the `hwq up` on this machine: its record, and what a client command uses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hwq.running_system import (
    RECORD_FILE,
    api_url,
    client_target,
    record_path,
    remove_record,
    running_up,
    write_record,
)
from tasks.errors import ConfigError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment of no hwq variables, a runtime folder of its own, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    return {"XDG_RUNTIME_DIR": str(tmp_path / "run")}


def home_with_token(path: Path, token: str) -> Path:
    path.mkdir(parents=True)
    (path / "admin.token").write_text(token + "\n")
    return path


def test_the_record_is_private_and_names_this_process(tmp_path: Path, env: dict[str, str]) -> None:
    home = home_with_token(tmp_path / "home", "t")
    path = write_record(home, "http://127.0.0.1:8123", env)
    assert path == tmp_path / "run" / "hwq" / RECORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    up = running_up(env)
    assert up is not None
    assert (up.home, up.url, up.pid) == (home.resolve(), "http://127.0.0.1:8123", os.getpid())
    remove_record(path)
    assert running_up(env) is None


def test_a_record_whose_process_is_gone_counts_as_none(tmp_path: Path, env: dict[str, str]) -> None:
    home = home_with_token(tmp_path / "home", "t")
    code = (
        "import sys; from pathlib import Path; from hwq.running_system import "
        "write_record; write_record(Path(sys.argv[1]), 'http://127.0.0.1:1', "
        "{'XDG_RUNTIME_DIR': sys.argv[2]})"
    )
    subprocess.run([sys.executable, "-c", code, str(home), env["XDG_RUNTIME_DIR"]], check=True)
    assert record_path(env).is_file()
    assert running_up(env) is None


def test_without_a_runtime_folder_the_record_is_under_the_config_folder() -> None:
    assert record_path({"HOME": "/h"}) == Path("/h/.config/hwq/up.json")


def test_a_client_finds_the_running_up_from_any_folder(tmp_path: Path, env: dict[str, str]) -> None:
    home = home_with_token(tmp_path / "home", "up-token")
    write_record(home, "http://127.0.0.1:8123", env)
    assert client_target(env) == ("http://127.0.0.1:8123", "up-token")
    # HWQ_URL naming that same system is fine; naming another one needs a token of its own.
    assert client_target({**env, "HWQ_URL": "http://127.0.0.1:8123"})[1] == "up-token"
    with pytest.raises(ConfigError, match="not the `hwq up` running here"):
        client_target({**env, "HWQ_URL": "https://hwq.example"})


def test_explicit_settings_win(tmp_path: Path, env: dict[str, str]) -> None:
    write_record(home_with_token(tmp_path / "home", "up-token"), "http://127.0.0.1:8123", env)
    other = home_with_token(tmp_path / "other", "other-token")
    assert client_target({**env, "HWQ_TOKEN": "mine"}) == ("http://127.0.0.1:8000", "mine")
    assert client_target({**env, "HWQ_HOME": str(other)}) == (
        "http://127.0.0.1:8000",
        "other-token",
    )
    with pytest.raises(ConfigError, match="HWQ_HOME has no admin.token"):
        client_target({**env, "HWQ_HOME": str(tmp_path)})


def test_with_nothing_running_and_nothing_set_it_says_what_to_set(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        client_target(env)
    message = str(raised.value)
    assert "HWQ_TOKEN" in message and "HWQ_HOME" in message and "no `hwq up` is running" in message


def test_a_wildcard_listen_address_is_reached_on_loopback() -> None:
    assert api_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert api_url("10.0.0.5", 80) == "http://10.0.0.5:80"
    assert api_url("::1", 8000) == "http://[::1]:8000"
