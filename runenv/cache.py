"""The node-local cache of runtime resources: unpacked code, Python environments.

Entries live at ``RUNENV_HOME/runtime_resources/<kind>-v1/<key>/``. The rules, in one place:

- An entry is built in a temporary directory beside it and published by renaming it into place;
  a directory under the final name is complete, and is never modified afterwards.
- Its stat manifest (``<key>.manifest``, :mod:`runenv.integrity`) is checked each time it is
  reused: an entry modified or damaged since it was built is moved aside and built again. Entries
  built ``read_only`` lose their write bits too, and as root are sealed (immutable) where the
  kernel allows it, so a careless process cannot change them.
- One file lock per key (``<key>.lock``): processes asking for the same entry at once build it
  once.
- Each user holds a *lease* — a shared lock on ``<key>.lease`` — for as long as it uses the
  entry; processes started with the entry's Context inherit it. The kernel drops it when the
  last holder dies, so leases never go stale. GC deletes an entry only when it can take that lock
  exclusively. (Both locks are :mod:`runenv.locks`.)
- A failed build is remembered for ``RUNENV_FAILURE_TTL_SECONDS`` (default 30), so a hundred
  tasks do not each rerun a failing install; a changed env has another key and builds at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runenv import integrity, locks, runs, settings
from runenv.deadline import Deadline
from runenv.errors import EnvSetupError, RunenvError, SetupTimeoutError

logger = logging.getLogger(__name__)
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH

FORMAT_VERSION = "v1"
ENTRY_META = ".runenv-entry.json"

Builder = Callable[[Path], dict[str, Any] | None]
# A shared lock on an entry's lease file, held until ``release`` or the end of its holders.
Lease = locks.HeldLock


@dataclass(frozen=True)
class Entry:
    """A published cache entry, and the lease that keeps it from being collected."""

    kind: str
    key: str
    path: Path
    lease: Lease
    built: bool  # built by this call (False: it was already there)
    replaced: integrity.Problem | None = None  # why the entry found there was built again


@dataclass(frozen=True)
class EntryInfo:
    kind: str
    key: str
    path: Path
    size: int  # bytes on disk, not counting files shared with uv's cache (hard links)
    created: float
    last_used: float
    in_use: bool
    description: dict[str, Any]


@dataclass(frozen=True)
class GcReport:
    removed: list[EntryInfo]
    kept_in_use: list[EntryInfo]

    @property
    def bytes_freed(self) -> int:
        return sum(entry.size for entry in self.removed)


class ResourceCache:
    """The cache under ``root`` (default ``RUNENV_HOME/runtime_resources``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or settings.runenv_home() / "runtime_resources"

    def entry_path(self, kind: str, key: str) -> Path:
        return self._bucket(kind) / key

    def acquire(
        self, kind: str, key: str, build: Builder, deadline: Deadline, *, read_only: bool = False
    ) -> Entry:
        """The entry for ``(kind, key)``, built with ``build(directory)`` if it is missing (or
        no longer what was built).

        ``build`` fills the directory it is given and may return a description to keep.
        The returned entry's lease is held; release it when done with the entry.
        """
        bucket = self._bucket(kind)
        bucket.mkdir(parents=True, exist_ok=True)
        lease = locks.shared(bucket / f"{key}.lease")
        try:
            os.utime(lease.fd)  # the lease file's mtime is the entry's last use
            built, replaced = self._ensure(kind, key, build, deadline, read_only)
        except BaseException:
            lease.release()
            raise
        if built:
            self._collect_if_over_cap()
        return Entry(kind, key, self.entry_path(kind, key), lease, built, replaced)

    def entries(self) -> list[EntryInfo]:
        """Every published entry, those with unreadable metadata included (as damaged)."""
        found = []
        for bucket in sorted(self.root.glob(f"*-{FORMAT_VERSION}")):
            kind = bucket.name.removesuffix(f"-{FORMAT_VERSION}")
            for path in sorted(bucket.iterdir()):
                if path.name.startswith(".") or not path.is_dir():
                    continue
                with contextlib.suppress(FileNotFoundError):  # removed while listing
                    found.append(self._info(kind, path))
        return found

    def verify(self, entry: EntryInfo, *, full: bool = False) -> integrity.Problem | None:
        """How ``entry`` differs from what was built, or None (``full``: re-hash every file)."""
        if "damaged" in entry.description:
            return integrity.Problem("damaged", str(entry.description["damaged"]))
        return integrity.check(entry.path, self._manifest(entry.kind, entry.key), full=full)

    def gc(self, max_bytes: int = 0) -> GcReport:
        """Remove unused entries, least recently used first, until the total is ``max_bytes``
        (and every run's copy of a working_dir that its run no longer holds)."""
        runs.sweep(str(self.root / runs.RUNS))
        self._remove_leftovers()
        entries = sorted(self.entries(), key=lambda entry: entry.last_used)
        total = sum(entry.size for entry in entries)
        removed, kept = [], []
        for entry in entries:
            if total <= max_bytes and max_bytes > 0:  # 0: every unused entry goes
                break
            if self._remove_if_unused(entry):
                removed.append(entry)
                total -= entry.size
            else:
                kept.append(entry)
        return GcReport(removed, kept)

    # --- building ---------------------------------------------------------------------------

    def _ensure(
        self, kind: str, key: str, build: Builder, deadline: Deadline, read_only: bool
    ) -> tuple[bool, integrity.Problem | None]:
        final = self.entry_path(kind, key)
        if _is_published(final) and self._problem(kind, key) is None:
            return False, None
        self._raise_remembered_failure(kind, key)
        with self._build_lock(kind, key, deadline):
            problem = self._problem(kind, key) if _is_published(final) else None
            if _is_published(final) and problem is None:  # built by another process meanwhile
                return False, None
            self._raise_remembered_failure(kind, key)
            if final.exists():  # modified, damaged, or without metadata: set aside, built again
                self._set_aside(kind, key)
                problem = problem or integrity.Problem("damaged", "its metadata is missing")
            self._build(kind, key, build, read_only)
        return True, problem

    def _problem(self, kind: str, key: str) -> integrity.Problem | None:
        return integrity.check(self.entry_path(kind, key), self._manifest(kind, key))

    def _set_aside(self, kind: str, key: str) -> None:
        """Move a published entry out of the way; collection deletes it once nobody uses it."""
        trash = self._bucket(kind) / f".trash-{key}-{uuid.uuid4().hex[:8]}"
        integrity.unseal(self.entry_path(kind, key), top_only=True)  # a sealed tree stays put
        with contextlib.suppress(FileNotFoundError):
            self.entry_path(kind, key).rename(trash)

    def _build(self, kind: str, key: str, build: Builder, read_only: bool) -> None:
        bucket = self._bucket(kind)
        for stale in bucket.glob(f".build-{key}-*"):  # from a build that was killed
            remove_tree(stale)
        staging = bucket / f".build-{key}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            description = build(staging) or {}
            _write_meta(staging, kind, key, description)
            if read_only:
                _remove_write_bits(staging)
            integrity.record(staging, self._manifest(kind, key), read_only=read_only)
            staging.rename(self.entry_path(kind, key))
            if read_only and os.geteuid() == 0:  # other users are stopped by the modes already
                integrity.seal(self.entry_path(kind, key), self._manifest(kind, key))
        except SetupTimeoutError:
            raise  # not remembered: a longer timeout (not part of the key) may well succeed
        except EnvSetupError as error:
            self._remember_failure(kind, key, error)
            raise
        finally:
            remove_tree(staging)  # gone already after a successful rename
        (bucket / f"{key}.failed").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _build_lock(self, kind: str, key: str, deadline: Deadline) -> Iterator[None]:
        try:
            lock = locks.exclusive(self._bucket(kind) / f"{key}.lock", deadline.remaining())
        except locks.LockTimeout:
            raise SetupTimeoutError(
                f"timed out waiting for another process to build {kind} {key[:12]}",
                hint="raise config.setup_timeout_seconds, or look at the other process",
                step=kind,
            ) from None
        with lock:
            yield

    # --- failures ---------------------------------------------------------------------------

    def _remember_failure(self, kind: str, key: str, error: EnvSetupError) -> None:
        record = {
            "time": time.time(),
            "message": error.message,
            "hint": error.hint,
            "step": error.step,
            "log_path": error.log_path,
        }
        marker = self._bucket(kind) / f"{key}.failed"
        with contextlib.suppress(OSError):
            marker.write_text(json.dumps(record))

    def _raise_remembered_failure(self, kind: str, key: str) -> None:
        marker = self._bucket(kind) / f"{key}.failed"
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            return
        age = time.time() - float(record.get("time", 0))
        if age > settings.failure_ttl_seconds():
            return
        raise EnvSetupError(
            f"{record['message']}\n(this failure happened {age:.0f} s ago and is remembered for "
            f"{settings.failure_ttl_seconds():.0f} s; the same env is not retried until then)",
            hint=record.get("hint"),
            step=record.get("step"),
            log_path=record.get("log_path"),
        )

    # --- usage and collection ---------------------------------------------------------------

    def _info(self, kind: str, path: Path) -> EntryInfo:
        lease_path = path.parent / f"{path.name}.lease"
        try:
            meta = json.loads((path / ENTRY_META).read_text())
            size, created = int(meta["size"]), float(meta["created"])
            description = dict(meta.get("description") or {})
        except FileNotFoundError:
            if not path.exists():
                raise
            size, created = disk_bytes(path), path.stat().st_mtime
            description = {"damaged": "its metadata is missing"}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            size, created = disk_bytes(path), path.stat().st_mtime
            description = {"damaged": f"its metadata is unreadable ({type(error).__name__})"}
        try:
            last_used = lease_path.stat().st_mtime
        except FileNotFoundError:
            last_used = created
        return EntryInfo(
            kind=kind,
            key=path.name,
            path=path,
            size=size,
            created=created,
            last_used=last_used,
            in_use=locks.is_held(lease_path),
            description=description,
        )

    def _remove_if_unused(self, entry: EntryInfo) -> bool:
        build_lock = locks.try_exclusive(entry.path.parent / f"{entry.key}.lock")
        if build_lock is None:
            return False  # being built or removed right now
        with build_lock:
            no_lease = locks.try_exclusive(entry.path.parent / f"{entry.key}.lease")
            if no_lease is None:
                return False  # someone holds a lease
            with no_lease:
                trash = entry.path.parent / f".trash-{entry.key}-{uuid.uuid4().hex[:8]}"
                integrity.unseal(entry.path, top_only=True)
                try:
                    entry.path.rename(trash)  # gone at once for readers; deleted at leisure
                except FileNotFoundError:
                    return True  # another collection removed it first
                self._manifest(entry.kind, entry.key).unlink(missing_ok=True)
            remove_tree(trash)
        return True

    def _remove_leftovers(self) -> None:
        """Directories of builds that were killed, and of removals that were interrupted."""
        for trash in self.root.glob(f"*-{FORMAT_VERSION}/.trash-*"):
            key = trash.name.removeprefix(".trash-").rsplit("-", 1)[0]
            unused = locks.try_exclusive(trash.parent / f"{key}.lease")
            if unused is None:
                continue  # an entry set aside while in use: its users may still read it
            with unused:
                remove_tree(trash)
        for staging in self.root.glob(f"*-{FORMAT_VERSION}/.build-*"):
            key = staging.name.removeprefix(".build-").rsplit("-", 1)[0]
            build_lock = locks.try_exclusive(staging.parent / f"{key}.lock")
            if build_lock is None:
                continue  # still being built
            with build_lock:
                remove_tree(staging)

    def _collect_if_over_cap(self) -> None:
        """Best effort: a build that succeeded never fails because collecting did."""
        try:
            cap = settings.cache_max_bytes()
            if cap is not None and sum(entry.size for entry in self.entries()) > cap:
                self.gc(cap)
        except (OSError, RunenvError) as error:
            logger.warning("runenv: collecting the env cache failed: %s", error)

    def _bucket(self, kind: str) -> Path:
        return self.root / f"{kind}-{FORMAT_VERSION}"

    def _manifest(self, kind: str, key: str) -> Path:
        return self._bucket(kind) / f"{key}.manifest"


def _is_published(path: Path) -> bool:
    return (path / ENTRY_META).is_file()


def _write_meta(directory: Path, kind: str, key: str, description: dict[str, Any]) -> None:
    meta = {
        "kind": kind,
        "key": key,
        "created": time.time(),
        "size": disk_bytes(directory),
        "description": description,
    }
    (directory / ENTRY_META).write_text(json.dumps(meta, indent=2))


def _remove_write_bits(root: Path) -> None:
    """Files and directories read-only (root is stopped only by sealing, and else by the
    manifest check catching its changes)."""
    for directory, _, names in os.walk(root, topdown=False):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode):
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~_WRITE_BITS)
        os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) & ~_WRITE_BITS)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, read-only and sealed entries included (unsealed and their
    directories made writable first: unlinking needs that)."""
    if not path.exists():
        return
    integrity.unseal(path)
    for directory, subdirectories, _ in os.walk(path):
        for name in (directory, *[os.path.join(directory, d) for d in subdirectories]):
            with contextlib.suppress(OSError):
                if not os.path.islink(name):
                    os.chmod(name, stat.S_IMODE(os.lstat(name).st_mode) | stat.S_IWUSR)
    shutil.rmtree(path, ignore_errors=True)


def disk_bytes(root: Path) -> int:
    """Bytes a directory takes on disk, leaving out files hard-linked from elsewhere."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if info.st_nlink == 1:
                total += info.st_blocks * 512
    return total
