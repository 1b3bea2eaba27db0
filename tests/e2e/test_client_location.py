"""Client commands and `hwq token create` outside the project folder find the running system.

Defect: `hwq token create` run outside the project folder silently created a new database
under ./var and printed a token the API rejected (401).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.harness_http import http
from bench.local_stack import hwq_up


def hwq(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_commands_elsewhere_use_the_running_up_or_say_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    # Where the package is importable from: the CLI runs as `python -m` from another folder.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    with hwq_up(tmp_path / "home", {**env, "HWQ_HOSTNAME": "where"}, "--sim", "1") as up:
        listing = hwq(elsewhere, env, "devices", "list")
        assert listing.returncode == 0, listing.stderr
        assert "sim0" in listing.stdout

        created = hwq(elsewhere, env, "token", "create", "--role", "viewer", "--name", "v")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert http("GET", f"{up.base}/devices", token=token).status == 200
        assert not (elsewhere / "var").exists()

    # Nothing runs any more: the commands say what to set instead of guessing.
    refused = hwq(elsewhere, env, "token", "create", "--role", "viewer", "--name", "w")
    assert refused.returncode == 1
    assert "there is no hwq database" in refused.stderr
    assert "HWQ_HOME" in refused.stderr and "HWQ_DATABASE_URL" in refused.stderr
    assert not (elsewhere / "var").exists()

    lost = hwq(elsewhere, env, "devices", "list")
    assert lost.returncode == 1
    assert "no token: set HWQ_TOKEN" in lost.stderr
