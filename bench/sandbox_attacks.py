"""Device programs that attack their host, each run in the program sandbox as a device worker
runs it: what stopped each one, how the command reports it, and how long it took to contain.

`python -m bench.sandbox_attacks` prints the table. Each attack must be stopped by its own
mechanism and reported with its own error, within its timeout + 2 s (CONTAINED_WITHIN_S);
tests/integration/test_program_attacks.py asserts the same of every row.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from worker_host.program_limits import ProgramLimits
from worker_host.program_sandbox import run_program

REPO = Path(__file__).resolve().parents[1]
# How long past its timeout an attack may take to be contained (killed, refused, cut short).
CONTAINED_WITHIN_S = 2.0
# A secret of the worker's that no program may read.
WORKER_SECRET = "hwq_worker_secret_not_for_programs"

Result = dict[str, Any]


@dataclass(frozen=True)
class Attack:
    """One hostile program, and how to tell from its result that it was contained."""

    name: str
    source: str
    timeout_s: float
    # What stopped it, if the result shows it was contained; None if it was not.
    stopped_by: Callable[[Result], str | None]
    # Whether only the namespaces and the other user contain it (see the README).
    needs_confinement: bool = False


def _timed_out(result: Result) -> str | None:
    if str(result.get("error", "")).startswith("timed_out"):
        return "wall-clock timeout: the process group and its tree killed"
    return None


def _raised(error: str, mechanism: str) -> Callable[[Result], str | None]:
    def check(result: Result) -> str | None:
        stderr = str(result.get("stderr", ""))
        return mechanism if result.get("exit_code") == 1 and error in stderr else None

    return check


def _output_capped(result: Result) -> str | None:
    stdout = str(result.get("stdout", ""))
    capped = result.get("truncated") == ["stdout"] and len(stdout) < 100 * 1024
    return "output cap: 64 KiB kept, the rest counted and dropped" if capped else None


def outside_folder() -> Path:
    """A folder outside the program's own that the program still sees (as read-only): where a
    write would escape to. Not under a hidden path (/tmp, /root, …), or the program would not
    see it at all and a checkout under /tmp would test nothing; /usr/local when we may write
    there (as root), else the checkout."""
    usr_local = Path("/usr/local")
    return usr_local if os.access(usr_local, os.W_OK) else REPO


def _escape_path() -> Path:
    return outside_folder() / f"escaped-{uuid.uuid4().hex[:8]}.txt"


def _nothing_written(path: Path) -> Callable[[Result], str | None]:
    check = _raised("Read-only file system", "every mount read-only but its own folder")

    def written_nowhere(result: Result) -> str | None:
        return None if path.exists() else check(result)

    return written_nowhere


def _no_secret(result: Result) -> str | None:
    seen = str(result.get("stdout", "")) + str(result.get("stderr", ""))
    if WORKER_SECRET in seen or "HWQ_" in seen:
        return None
    check = _raised("FileNotFoundError", "scrubbed environment; the worker not in its PID space")
    return check(result)


def attacks() -> list[Attack]:
    """The attacks of the issue's list, and a large file besides."""
    escape = _escape_path()
    return [
        Attack("endless loop", "while True:\n    pass\n", 1.0, _timed_out),
        Attack(
            "fork bomb",
            "import os\nwhile True:\n    os.fork()\n",
            5.0,
            _raised("BlockingIOError", "process limit (RLIMIT_NPROC as nobody); PID namespace"),
            needs_confinement=True,
        ),
        Attack(
            "4 GB allocation",
            "x = bytearray(4 * 1024 ** 3)\n",
            5.0,
            _raised("MemoryError", "address-space limit (RLIMIT_AS)"),
        ),
        Attack(
            "socket to the worker's Redis",
            "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', 6379))\n",
            5.0,
            _raised("Network is unreachable", "network namespace with no interface"),
            needs_confinement=True,
        ),
        Attack(
            "writing outside its folder",
            f"open({str(escape)!r}, 'w').write('escaped')\n",
            5.0,
            _nothing_written(escape),
            needs_confinement=True,
        ),
        Attack(
            "reading the worker's environment",
            textwrap.dedent(
                f"""\
                import os
                print(sorted(os.environ))
                print(open('/proc/{os.getpid()}/environ', 'rb').read())
                """
            ),
            5.0,
            _no_secret,
            needs_confinement=True,
        ),
        Attack(
            "100 MB of stdout",
            "import sys\nsys.stdout.write('x' * 100_000_000)\n",
            10.0,
            _output_capped,
        ),
        Attack(
            "50 MB file",
            "open('big', 'wb').write(b'x' * 50 * 1024 * 1024)\n",
            5.0,
            _raised("File too large", "file-size limit (RLIMIT_FSIZE)"),
        ),
    ]


def confined() -> bool:
    """Whether this machine gives programs their namespaces (a private /proc shows PID 1)."""
    result = run_program("import os; print(sorted(os.listdir('/proc'))[:1])", 5.0)
    return bool(result["stdout"] == "['1']\n")


def launch(attack: Attack) -> tuple[Result, float]:
    """Run one attack with the worker's secret in its environment: result and seconds taken."""
    before = os.environ.get("HWQ_DATABASE_URL")
    os.environ["HWQ_DATABASE_URL"] = f"postgresql+psycopg://hwq:{WORKER_SECRET}@db/hwq"
    try:
        started = time.monotonic()
        result = run_program(attack.source, attack.timeout_s, limits=ProgramLimits())
        return result, time.monotonic() - started
    finally:
        if before is None:
            os.environ.pop("HWQ_DATABASE_URL", None)
        else:
            os.environ["HWQ_DATABASE_URL"] = before


def reported_as(result: Result) -> str:
    """How the command's result says what happened, in a few words."""
    if result.get("error"):
        return str(result["error"])[:48]
    if result.get("truncated"):
        return f"truncated: {result['truncated']}"
    last = str(result.get("stderr", "")).strip().splitlines()[-1:] or ["(nothing)"]
    return f"exit {result.get('exit_code')}: {last[0][:40]}"


def run(quick: bool = False) -> dict[str, Any]:
    """Run every attack once."""
    rows: list[dict[str, Any]] = []
    for attack in attacks():
        result, seconds = launch(attack)
        bound = attack.timeout_s + CONTAINED_WITHIN_S
        rows.append({
            "attack": attack.name,
            "stopped_by": attack.stopped_by(result) or "NOT CONTAINED",
            "reported_as": reported_as(result),
            "seconds": round(seconds, 2),
            "timeout_s": attack.timeout_s,
            "within_bound": seconds <= bound,
        })  # fmt: skip
    checks = [
        {
            "name": f"sandbox: {row['attack']} contained",
            "value": row["seconds"],
            "relation": "<=",
            "target": row["timeout_s"] + CONTAINED_WITHIN_S,
            "met": row["within_bound"] and row["stopped_by"] != "NOT CONTAINED",
        }
        for row in rows
    ]
    return {"confined": confined(), "attacks": rows, "checks": checks, "machine": common.machine()}


def report(results: dict[str, Any]) -> None:
    """Print the table."""
    rows = [("attack", "stopped by", "reported as", "contained in", "bound")]
    for row in results["attacks"]:
        bound = row["timeout_s"] + CONTAINED_WITHIN_S
        rows.append((row["attack"], row["stopped_by"], row["reported_as"],
                     f"{row['seconds']:.2f} s", f"{bound:g} s"))  # fmt: skip
    where = "with namespaces" if results["confined"] else "WITHOUT namespaces (see the README)"
    common.print_table(f"Program sandbox attacks, {where}", rows)


if __name__ == "__main__":
    outcome = run(quick="--quick" in sys.argv)
    report(outcome)
    common.write_results("sandbox_attacks", outcome)
