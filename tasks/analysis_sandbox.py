"""Registered analyzers run in child processes, each analysis bounded in wall-clock time.

A regular expression can backtrack for hours over a few dozen characters (`^(a+)+$` against
36 `a`s and a `!`), and Python's `re` holds the interpreter lock all the while. Run inside
the server worker, it stopped the recorder, the reaper, other commands' analyses and the
worker's heartbeats with it. In a child process it only costs that child, which is killed
when its time is up; the worker's threads wait on a pipe meanwhile, without the lock.

The children are kept and reused (starting one costs tens of milliseconds, an analysis
microseconds). Each reads one JSON request per line on stdin and writes one JSON verdict per
line on stdout; `python -m tasks.analysis_sandbox` is that child.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from tasks.analysis import run_analyzer
from tasks.parent_death import signal_on_parent_death

log = logging.getLogger("hwq.analysis")

# What a child may keep of the worker's environment: enough to start Python, no credentials.
_KEPT_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
# A child's address space; an analyzer that wants more gets a MemoryError, not the machine.
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
# Its niceness: the API, the recorder and the device workers come before a long analysis.
CHILD_NICENESS = 10
# CPU seconds a child may spend beyond an analysis's time limit before the kernel stops it;
# a backstop for a child whose worker vanished while the analysis ran.
CPU_LIMIT_MARGIN_S = 2
# How long a new child may take to start (its imports), apart from any analysis's limit.
CHILD_START_TIMEOUT_S = 30.0
# What a child writes once it is ready for requests.
READY_LINE = b"ready"


class AnalysisTimedOut(Exception):
    """The analyzer did not finish within its time limit; its child was killed."""


class AnalyzerDied(Exception):
    """The analyzer's child process ended or stopped answering sensibly."""


class AnalyzerProcess:
    """One child process that runs analyzers on request."""

    def __init__(self) -> None:
        environment = {k: os.environ[k] for k in _KEPT_ENVIRONMENT if k in os.environ}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tasks.analysis_sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            close_fds=True,
        )
        self._ready = False

    def _wait_ready(self, stdout: IO[bytes]) -> None:
        """Wait for the child's first line, which it writes once its imports are done.

        An analysis's time limit starts after this: a child started on a busy machine may
        take seconds to import, which is no fault of the analysis.
        """
        readable, _, _ = select.select([stdout], [], [], CHILD_START_TIMEOUT_S)
        if not readable or stdout.readline().strip() != READY_LINE:
            self.kill()
            raise AnalyzerDied(f"the analyzer process did not start within "
                               f"{CHILD_START_TIMEOUT_S:g} s")  # fmt: skip
        self._ready = True

    def analyse(self, analysis: dict[str, Any], response: dict[str, Any], timeout_s: float) -> Any:
        """The verdict; raises AnalysisTimedOut or AnalyzerDied (the child is then gone)."""
        stdin, stdout = self._pipes()
        if not self._ready:
            self._wait_ready(stdout)
        request = {"analysis": analysis, "response": response, "timeout_s": timeout_s}
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
        except OSError as e:
            self.kill()
            raise AnalyzerDied(f"the analyzer process would not take the request: {e}") from e
        readable, _, _ = select.select([stdout], [], [], timeout_s)
        if not readable:
            self.kill()
            raise AnalysisTimedOut(f"the analyzer did not finish within {timeout_s:g} s")
        line = stdout.readline()
        try:
            return json.loads(line)["verdict"]
        except (ValueError, KeyError, TypeError):
            self.kill()
            code = self.process.poll()
            raise AnalyzerDied(f"the analyzer process ended (exit status {code})") from None

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self.process.stdin is None or self.process.stdout is None:
            raise AnalyzerDied("the analyzer process has no pipes")
        return self.process.stdin, self.process.stdout

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.process.poll() is None

    def kill(self) -> None:
        """End the child at once and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class AnalyzerPool:
    """Runs analyses in reusable child processes, one analysis per child at a time."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._idle: list[AnalyzerProcess] = []
        self._lock = threading.Lock()

    def verdict(self, analysis: dict[str, Any], response: dict[str, Any]) -> Any:
        """The analyzer's verdict, or `{"error": …}` if it overran its time or its child died."""
        child = self._take()
        try:
            verdict = child.analyse(analysis, response, self.timeout_s)
        except AnalysisTimedOut:
            return {
                "error": f"analysis stopped: {analysis.get('analyzer')} did not finish "
                f"within {self.timeout_s:g} s",
                "passed": False,
            }
        except AnalyzerDied as e:
            return {"error": f"analysis failed: {e}", "passed": False}
        self._give_back(child)
        return verdict

    def _take(self) -> AnalyzerProcess:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    return child
                child.kill()
        return AnalyzerProcess()

    def _give_back(self, child: AnalyzerProcess) -> None:
        with self._lock:
            self._idle.append(child)

    def close(self) -> None:
        """End every idle child."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


# The child's side ---------------------------------------------------------------------------


def _end_with_worker() -> None:
    """SIGKILL this child when the worker that started it dies, however it dies (Linux)."""
    parent = os.getppid()
    if not signal_on_parent_death(signal.SIGKILL):
        return  # elsewhere the CPU limit below still ends a runaway analysis
    if os.getppid() != parent:  # the worker died before the request took effect
        os._exit(1)


def _confine_child() -> None:
    _end_with_worker()
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    # The worker keeps to one CPU (worker_host/cpu_placement.py); an analysis may use any.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _limit_cpu_for(timeout_s: float) -> None:
    """Let the kernel stop this child once the analysis has had its time and a margin."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    allowed = int(usage.ru_utime + usage.ru_stime + timeout_s) + CPU_LIMIT_MARGIN_S
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        allowed = min(allowed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (allowed, hard))


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer analysis requests, one JSON line each, until the worker closes the pipe."""
    replies.write(READY_LINE + b"\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        _limit_cpu_for(float(request["timeout_s"]))
        verdict = run_analyzer(request["analysis"], request["response"])
        try:
            reply = json.dumps({"verdict": verdict})
        except (TypeError, ValueError) as e:
            not_json = {"error": f"the verdict is not JSON: {e}", "passed": False}
            reply = json.dumps({"verdict": not_json})
        replies.write(reply.encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    _confine_child()
    serve(sys.stdin.buffer, sys.stdout.buffer)
