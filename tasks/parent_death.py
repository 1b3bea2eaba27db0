"""A child process that ends with its parent, however the parent ends (Linux).

Used by every process hwq starts under another: `hwq up`'s children, the API server's worker,
the embedded Redis and the analyzers' sandboxes.
"""

from __future__ import annotations

import ctypes

_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(sig: int) -> bool:
    """Have the kernel send `sig` to this process when its parent dies; False where it cannot."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except OSError:
        return False
    return True
