"""runenv.locks: exclusive locks with a timeout, shared leases inherited by children, probes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runenv import locks

# Holds a lock on argv[1] (exclusive or shared, argv[2]) until its stdin closes.
HOLDER = """
import sys
from runenv import locks
take = locks.exclusive if sys.argv[2] == "exclusive" else lambda path, timeout: locks.shared(path)
held = take(sys.argv[1], None)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_elsewhere(path: Path, mode: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a lock on ``path`` for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_an_exclusive_lock_excludes_other_processes_until_released(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    with held_elsewhere(path, "exclusive"):
        assert locks.is_held(path)
        assert locks.try_exclusive(path) is None
        started = time.monotonic()
        with pytest.raises(locks.LockTimeout):
            locks.exclusive(path, timeout=0.2)
        assert time.monotonic() - started >= 0.2
    assert not locks.is_held(path)
    with locks.exclusive(path, timeout=0) as lock:
        assert lock.fd >= 0 and locks.is_held(path)
    assert lock.fd == -1 and not locks.is_held(path)


def test_a_waiting_exclusive_lock_is_granted_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    first = locks.exclusive(path, timeout=None)
    granted: list[locks.HeldLock] = []
    waiter = threading.Thread(target=lambda: granted.append(locks.exclusive(path, timeout=30)))
    waiter.start()
    assert not granted  # two opens in one process exclude each other as two processes do
    first.release()
    waiter.join(timeout=30)
    assert len(granted) == 1
    granted[0].release()


def test_shared_leases_coexist_and_keep_exclusive_out(tmp_path: Path) -> None:
    path = tmp_path / "k.lease"
    with held_elsewhere(path, "shared"), locks.shared(path) as mine:
        assert mine.fd >= 0 and locks.is_held(path)
        assert locks.try_exclusive(path) is None
    free = locks.try_exclusive(path)
    assert free is not None
    free.release()


def test_a_lease_passed_to_a_child_is_held_until_the_child_ends(tmp_path: Path) -> None:
    path = tmp_path / "k.lease"
    lease = locks.shared(path)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(lease.fd,),
    )
    lease.release()
    assert locks.is_held(path)  # the child's copy of the descriptor holds it
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)
    assert not locks.is_held(path)


def test_probing_a_missing_file_neither_fails_nor_creates_it(tmp_path: Path) -> None:
    assert not locks.is_held(tmp_path / "missing.lease")
    assert not (tmp_path / "missing.lease").exists()


def test_release_twice_is_harmless(tmp_path: Path) -> None:
    lock = locks.exclusive(tmp_path / "k.lock", timeout=None)
    lock.release()
    lock.release()
    assert lock.fd == -1
