"""The README's notebook example of the Python client, run cell by cell against a real stack,
so the example stays one a user can paste."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bench.local_stack import Stack

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "#### In a notebook"

pytestmark = pytest.mark.timeout(300)


def _cells() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n### ", start)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_notebook_example_runs_as_written(stack: Stack) -> None:
    stack.add_sim_device("sim0")
    cells = _cells()
    assert len(cells) >= 6
    namespace: dict[str, Any] = {}
    for cell in cells:
        # Only where the stack is differs from the README's `hwq up`; the pauses are shortened.
        source = (
            cell.replace('"http://127.0.0.1:8000"', repr(f"http://127.0.0.1:{stack.api_port}"))
            .replace('Path("var/admin.token").read_text().strip()', repr(stack.admin_token))
            .replace("time.sleep(1)", "time.sleep(0.05)")
        )
        exec(compile(source, "README.md (notebook cell)", "exec"), namespace)  # noqa: S102
    assert namespace["reply"].state == "done"
    assert namespace["reply"].text.startswith("HWQ,SIM")
    volts = namespace["volts"]
    assert len(volts) == 10 and all(isinstance(v, float) for v in volts)
