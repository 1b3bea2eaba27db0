"""The OpenAPI document says what the server does: schemathesis, every check, 0 failures.

Schemathesis reads `/api/v1/openapi.json` from a live stack of its own (it registers, changes
and deletes devices and cancels commands) and sends what the document allows and what it
forbids, over HTTP: the server must accept the first, refuse the second with a 4xx, and answer
as documented (status, content type, headers, body schema).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local_stack import Stack, running_stack

from openapi_conformance_hooks import OWN_TOKEN_ID_VARIABLE

# Test cases per operation and phase: enough to walk every documented field and its bounds,
# few enough that the run takes a minute or two on a busy two-core machine.
MAX_EXAMPLES = int(os.environ.get("HWQ_CONFORMANCE_EXAMPLES", "30"))
# A fixed seed makes a failure in CI replayable; set HWQ_CONFORMANCE_SEED to explore others.
SEED = os.environ.get("HWQ_CONFORMANCE_SEED", "20261122")
RUN_TIMEOUT_S = 600
HOOKS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def conformance_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack for schemathesis alone, with one simulated device that answers."""
    with running_stack(tmp_path_factory.mktemp("hwq-conformance"), redis_url) as stack:
        stack.add_sim_device("sim0")
        yield stack


def _schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is not installed: make .venv/.installed-dev (the dev extras)"
    return found


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_the_server_does_what_its_openapi_document_says(
    conformance_stack: Stack, tmp_path: Path
) -> None:
    stack = conformance_stack
    # The run's own token: a generated DELETE /tokens/{id} must not revoke it (see the hooks).
    own = [t for t in stack.request("GET", "/tokens").body["items"] if t["name"] == "e2e"]
    assert len(own) == 1, own
    env = {
        **os.environ,
        OWN_TOKEN_ID_VARIABLE: str(own[0]["id"]),
        "SCHEMATHESIS_HOOKS": "openapi_conformance_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS_DIR), os.environ.get("PYTHONPATH")])),
    }
    command = [
        _schemathesis(), "--no-color", "run", f"{stack.base}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {stack.admin_token}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        # One worker: ast.parse in Python 3.11 is not safe across threads, and hypothesis
        # parses lambdas' sources while it builds strategies.
        "--workers", "1",
        "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    # Every operation got past authentication: the run's token stayed valid throughout.
    assert "Authentication failed" not in output, output[-5000:]
    # Every operation of the document was reached, none skipped for want of a way to call it.
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, output[-5000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) > 0, output[-5000:]
