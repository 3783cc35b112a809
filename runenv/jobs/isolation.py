"""What a job cannot reach: the server's settings, the job store, other jobs, the token.

Every process here runs as the same user, so file modes alone cannot keep a job from the job
store. On Linux a job's entrypoint starts in a mount namespace of its own (plus a user namespace
when not root) in which the jobs directory and the token's directory are covered by an empty,
read-only tmpfs, and a token file elsewhere by ``/dev/null``. Its own log stays open (it is its
stdout, not a path) and the node's env cache stays visible. The server and the supervisors make
themselves non-dumpable, so a job cannot reach their memory, open files or mounts through
``/proc/<pid>/`` either.

What remains, for a job of the same user: the processes of *other running jobs* (their
``/proc/<pid>/environ``, their open log as ``fd/1``), and as root, everything (root can undo the
covers). Where namespaces are unavailable the job runs uncovered and its log says so once.

A job's environment starts from the server's, without runenv's own settings except the node's
cache settings (:data:`JOB_SETTINGS`): never ``RUNENV_TOKEN`` or ``RUNENV_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping

from runenv.jobs.auth import TOKEN_FILE_VARIABLE, auth_home
from runenv.jobs.store import jobs_home

# RUNENV_* settings a job keeps: where this node's env cache is and how it behaves, so that
# runenv inside the job (runenv.init, nested envs) shares the cache. Every other one is dropped.
JOB_SETTINGS = frozenset(
    {
        "RUNENV_HOME",
        "RUNENV_CACHE_MAX_GB",
        "RUNENV_FAILURE_TTL_SECONDS",
        "RUNENV_MAX_PACKAGE_MB",
        "RUNENV_IGNORE_GITIGNORE",
        "RUNENV_WORKER_IDLE_SECONDS",
        "RUNENV_MAX_UNPACK_MB",
        "RUNENV_MAX_UNPACK_ENTRIES",
        "RUNENV_MAX_UNPACK_DEPTH",
        "RUNENV_MAX_COMPRESSION_RATIO",
        "RUNENV_LINK_MODE",
    }
)

# Runs between the death-signal helper and the entrypoint (`-I -S`: nothing imported): enters
# the namespaces, covers the paths, and execs the command whatever happened.
_ISOLATE = r"""
import ctypes, os, sys
report, *rest = sys.argv[1:]
split = rest.index("--")
paths, command = rest[:split], rest[split + 1:]
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what + ": " + os.strerror(ctypes.get_errno()))
try:
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(0x00020000 | (0x10000000 if uid else 0)), "unshare")
    if uid:
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                           ("gid_map", "%d %d 1" % (gid, gid))):
            with open("/proc/self/" + name, "w") as handle:
                handle.write(text)
    check(libc.mount(b"none", b"/", None, 16384 | 262144, None), "making mounts private")
    for path in paths:
        if os.path.isdir(path):
            options = b"size=4k,nr_inodes=1,mode=0"
            check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", 1 | 2 | 4 | 8, options), path)
        elif os.path.exists(path):
            check(libc.mount(b"/dev/null", path.encode(), None, 4096, None), path)
except OSError as error:
    if report == "report":
        message = ("[runenv] no mount namespace for this job (%s): it can read the job store "
                   "and other jobs' logs (see job isolation in runenv's README)\n" % error)
        os.write(2, message.encode())
os.execv(command[0], command)
"""


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without runenv's own settings, except those in :data:`JOB_SETTINGS`."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith("RUNENV_") or name in JOB_SETTINGS
    }


def hidden_paths() -> list[str]:
    """What a job must not reach: the job store and every job's files, and the token."""
    paths = [str(jobs_home()), str(auth_home())]
    token_file = os.environ.get(TOKEN_FILE_VARIABLE)
    if token_file:
        paths.append(token_file)
    return paths


def wrapper(report: bool) -> list[str]:
    """The command that starts the entrypoint with :func:`hidden_paths` covered (empty off
    Linux); ``report``: say in the job's log when it cannot."""
    if sys.platform != "linux":
        return []
    mode = "report" if report else "quiet"
    return [sys.executable, "-I", "-S", "-c", _ISOLATE, mode, *hidden_paths(), "--"]


def make_undumpable() -> None:
    """Keep processes of the same user out of this one's ``/proc/<pid>/`` (memory, environ,
    fds, root): Linux's PR_SET_DUMPABLE 0. Reset for the programs this process execs."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
