"""Noting what a runtime env was made from, for the CLI's fast path (:mod:`runenv.cli.fast`).

While a recording is active, the packaging walk notes each directory it listed and each file it
included, materializing notes each cache entry it leased, and an audit hook notes every file
opened for reading (runtime_env and requirements files, ignore files, archives). Outside a
recording, noting costs one check. The recording is per process: only the CLI starts one.
"""

from __future__ import annotations

import os
import sys
import time

_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Recording:
    """What one setup read: paths whose stat must not change, cache entries it leased."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.paths: set[str] = set()  # noted by name: files and directories
        self.opened: set[str] = set()  # every file opened for reading, imports included
        self.entries: list[str] = []  # cache entry directories

    def note_path(self, path: str) -> None:
        self.paths.add(os.path.abspath(path))


_active: Recording | None = None
_hook_installed = False


def start() -> Recording:
    """Start noting; what was noted is in the returned Recording until :func:`stop`."""
    global _active, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # cannot be removed: it does nothing when no recording is on
        _hook_installed = True
    _active = Recording()
    return _active


def stop() -> None:
    global _active
    _active = None


def note_path(path: str) -> None:
    """A file or directory whose content the result depends on."""
    if _active is not None:
        _active.note_path(path)


def note_entry(path: str) -> None:
    """A cache entry the result uses (it must still be published for the result to hold)."""
    if _active is not None:
        _active.entries.append(str(path))


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _active is None or event != "open":
        return
    path, _, flags = args
    reading = isinstance(flags, int) and not flags & _WRITING
    if reading and isinstance(path, (str, bytes, os.PathLike)):
        _active.opened.add(os.path.abspath(os.fsdecode(path)))
