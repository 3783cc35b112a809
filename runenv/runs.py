"""Per-run working directories: each run gets a fresh, writable copy of its cached working_dir.

A working_dir is a cache entry like any other — read-only, sealed as root, checked before reuse
— but a run's cwd must be writable (Ray's is: jobs write their outputs there). So every run
(a ``runenv run``, a job, a driver's workers) works in its own copy, made from the entry when
the run starts: what one run writes, edits or deletes is never seen by another, concurrent or
later. Copies are reflinks where the file system has them (btrfs, XFS: no data copied), else
in-kernel copies; a working_dir is at most ``RUNENV_MAX_PACKAGE_MB``.

A copy lives at ``RUNENV_HOME/runtime_resources/runs/<id>/`` and is held, like a lease, by a
shared ``flock`` on the directory itself, which the run's processes inherit. Once they have all
exited, the next run (or ``runenv env gc``) deletes it.

Like :mod:`runenv.integrity`, this loads nothing Python does not have built in: the CLI's fast
path makes copies too.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
import uuid

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
RUNS = "runs"
_STARTING = ".new-"  # a copy being made; older than this is from a process that died meanwhile
_STARTING_GRACE_S = 600.0


def fresh_copy(source: str, runs: str) -> tuple[str, int]:
    """A writable copy of the tree ``source`` under ``runs``, and the descriptor whose shared
    lock keeps it (pass it on to the run's processes; close it to give the copy up)."""
    os.makedirs(runs, exist_ok=True)
    sweep(runs)
    name = uuid.uuid4().hex[:16]
    starting = os.path.join(runs, _STARTING + name)
    os.mkdir(starting, 0o755)
    fd = os.open(starting, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        copy_tree(source, starting)
        final = os.path.join(runs, name)
        os.rename(starting, final)  # the lock belongs to the open directory: it moves too
    except BaseException:
        os.close(fd)
        remove(starting)
        raise
    return final, fd


def sweep(runs: str) -> None:
    """Delete the copies no process holds any more."""
    try:
        names = os.listdir(runs)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(runs, name)
        if name.startswith(_STARTING) and _age(path) < _STARTING_GRACE_S:
            continue  # being made: its lock is taken right after its mkdir
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use
        finally:
            os.close(fd)
        # Nobody takes a lock on an existing copy: only its maker did, so it stays free.
        remove(path)


def copy_tree(source: str, target: str) -> None:
    """Copy the tree at ``source`` into the existing directory ``target``: files (reflinked
    when possible) and links as they are, everything writable by its owner, times kept."""
    stack = [("", os.lstat(source))]
    while stack:
        relative, info = stack.pop()
        into = os.path.join(target, relative) if relative else target
        with os.scandir(os.path.join(source, relative) if relative else source) as entries:
            for entry in entries:
                child = os.path.join(relative, entry.name) if relative else entry.name
                entry_info = entry.stat(follow_symlinks=False)
                destination = os.path.join(target, child)
                if stat.S_ISLNK(entry_info.st_mode):
                    os.symlink(os.readlink(entry.path), destination)
                elif stat.S_ISDIR(entry_info.st_mode):
                    os.mkdir(destination)
                    stack.append((child, entry_info))
                elif stat.S_ISREG(entry_info.st_mode):
                    copy_file(entry.path, destination, entry_info)
        os.chmod(into, _writable(info.st_mode))
        os.utime(into, ns=(info.st_atime_ns, info.st_mtime_ns))


def copy_file(source: str, target: str, info: os.stat_result) -> None:
    reading = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Created with its mode (the umask applies, as for cp): no chmod afterwards.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        writing = os.open(target, flags, _writable(info.st_mode))
        try:
            try:
                fcntl.ioctl(writing, FICLONE, reading)
            except OSError:  # no reflinks here: copy in the kernel
                remaining = info.st_size
                while remaining > 0:
                    copied = _copy_range(reading, writing, remaining)
                    if copied == 0:
                        break
                    remaining -= copied
            os.utime(writing, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(writing)
    finally:
        os.close(reading)


def remove(path: str) -> None:
    """Delete a copy (its directories are writable: copies are made so)."""
    import shutil  # on use: a sweep with nothing to delete needs none of it

    shutil.rmtree(path, ignore_errors=True)


def _copy_range(source_fd: int, target_fd: int, count: int) -> int:
    chunk = min(count, 1 << 30)
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(source_fd, target_fd, chunk)
        except OSError:
            pass  # e.g. across file systems on older kernels
    data = os.read(source_fd, min(chunk, 1 << 20))
    os.write(target_fd, data)
    return len(data)


def _writable(mode: int) -> int:
    return stat.S_IMODE(mode) | stat.S_IWUSR


def _age(path: str) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0
