"""Background bookkeeping that gives way to the live path the moment it needs a CPU.

The recorder wakes every few tens of milliseconds and spends a few milliseconds of CPU on a
batch. On a two-core machine that burst lands on some command's path one time in twenty:
the submission, the device worker and the long-poll wait for a core, and the burst is the
latency tail. A thread under Linux's SCHED_IDLE policy is preempted by any ordinary thread
that wakes, so the batch runs in the gaps between commands instead. Under sustained load
the gaps close and such a thread gets only a sliver of a CPU, so work that must keep up
hands itself to a thread of ordinary priority once it falls behind (the recorder does, on
a full batch): an unprivileged thread cannot leave SCHED_IDLE again. A thread that holds a lock
others wait on must not run this way: preempted while holding it, it would make them wait
for as long as the CPU stays busy.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("hwq.priority")


def yield_to_everything_else() -> bool:
    """Put the calling thread under SCHED_IDLE; False where the system does not offer it."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as e:  # a sandbox that forbids it: run at the ordinary priority
        log.info("thread keeps its priority", extra={"error": str(e)})
        return False
    return True
