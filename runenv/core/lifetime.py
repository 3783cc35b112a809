"""How a Python process runenv starts dies with its parent (stdlib only: workers import it).

runenv's launcher (``runenv.process``) starts such a process without a helper in front, and
passes its own pid; the process arms its death signal itself, first thing.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux), and exit now if it already has.

    The parent may die between starting this process and this call, and then no signal will
    ever come; the process was reparented, so ``getppid()`` tells.
    """
    if sys.platform == "linux":
        import ctypes  # here: ~4 ms, paid by the processes that arm only

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
