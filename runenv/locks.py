"""File locks: one mechanism (``flock``) and one small API for the whole project.

- :func:`exclusive` — wait (up to a timeout) for sole ownership: a build lock.
- :func:`try_exclusive` — take sole ownership now or not at all: GC and clean-up.
- :func:`shared` — a lease: many holders at once, none while someone holds it exclusively.
- :func:`is_held` — whether anyone holds a lock on a file, without keeping one.

An ``flock`` belongs to the open file, not to the process: it lasts until every descriptor of
that open file is closed — in this process and in the children it passed the descriptor to —
and the kernel drops it when they die, so a lock never goes stale. Two opens in one process
exclude each other as two processes do. Lock files are never deleted: a lock on a file that was
unlinked would not exclude a lock on the file that replaces it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

# Waiting with a timeout polls: from this interval, doubling, up to the cap.
_FIRST_POLL_S = 0.002
_POLL_CAP_S = 0.05


class LockTimeout(Exception):
    """The lock was not free within the timeout (callers say what they were waiting for)."""


class HeldLock:
    """A held lock on an open descriptor of its file; released by :meth:`release` or ``with``.

    ``fd`` may be passed to child processes (``pass_fds``): they then hold it too.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor of the open file drops the lock
            self.fd = -1

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def exclusive(path: Path, timeout: float | None) -> HeldLock:
    """Sole ownership of ``path``, waiting at most ``timeout`` seconds (None: no limit).

    Raises :class:`LockTimeout` when the lock is still taken at the end.
    """
    fd = _open(path)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _wait_exclusive(fd, time.monotonic() + timeout)
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd, path)


def try_exclusive(path: Path) -> HeldLock | None:
    """Sole ownership of ``path`` if nobody holds it now, else None."""
    fd = _open(path)
    if _try(fd, fcntl.LOCK_EX):
        return HeldLock(fd, path)
    os.close(fd)
    return None


def shared(path: Path) -> HeldLock:
    """A shared lock on ``path`` (waits while someone holds it exclusively, which is brief)."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd, path)


def is_held(path: Path) -> bool:
    """Whether anyone holds a lock (shared or exclusive) on ``path``; a missing file is free."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _try(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)  # closing drops the probe's own lock


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_exclusive(fd: int, end: float) -> None:
    interval = _FIRST_POLL_S
    while not _try(fd, fcntl.LOCK_EX):
        left = end - time.monotonic()
        if left <= 0:
            raise LockTimeout
        time.sleep(min(interval, left))
        interval = min(interval * 2, _POLL_CAP_S)
