"""Job records in SQLite under ``RUNENV_HOME`` (WAL: safe for concurrent CLI processes).

Each record is a row with the indexed fields as columns and the whole record as JSON. Updates
are compare-and-set on the status, so a stop, a supervisor and a reader never overwrite each
other's terminal status.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from runenv import locks, settings
from runenv.diskfull import disk_full_error
from runenv.errors import RunenvError
from runenv.jobs.models import JobInfo, JobStatus, check_submission_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    submission_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_time REAL NOT NULL,
    record TEXT NOT NULL
)
"""


_BUSY_SECONDS = 30.0  # how long a statement waits for another connection's lock
_RETRY_SECONDS = 0.01
_SQLITE_FULL = 13  # "database or disk is full"
_FREE_PAGES_KEPT = 256  # 1 MiB of 4 KiB pages: less is not worth giving back
_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
_WAL_KEPT_BYTES = 4 * 1024 * 1024  # the write-ahead log is truncated to this after a checkpoint


class DuplicateJobError(RunenvError):
    """A job with this submission id exists already."""


class JobNotFoundError(RunenvError):
    """No job has this submission id."""


def jobs_home() -> Path:
    return settings.runenv_home() / "jobs"


def private_directory(path: Path) -> None:
    """``path`` as a directory only its owner can enter (0700); a looser one runenv made
    before is tightened, with the files in it (records and logs hold env_vars)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) == 0o700:
        return
    path.chmod(0o700)
    for child in path.iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            child.chmod(0o700 if child.is_dir() else 0o600)


def open_private(path: Path, *, append: bool = True) -> BinaryIO:
    """``path`` opened for writing (unbuffered; appending unless told), created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return open(os.open(path, flags, 0o600), "ab" if append else "wb", buffering=0)


class JobStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or jobs_home() / "jobs.sqlite"
        private_directory(self.path.parent)
        if not self.path.exists():
            self._create()

    def _create(self) -> None:
        """Make the file in WAL mode once, one process at a time: switching a file that others
        already use to WAL waits for every reader to go, which a burst of processes starting
        at once (submissions, their supervisors) may never allow in time."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        os.close(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            lock = locks.exclusive(lock_path, _BUSY_SECONDS)
        except locks.LockTimeout:
            raise RunenvError(
                f"the job store {self.path} is being created by another process for too long",
                hint=f"look for a stuck runenv process holding {lock_path}",
            ) from None
        with lock:
            # Made 0600 before SQLite opens it: its -wal and -shm files take the file's mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            with self._connection():
                pass

    def insert(self, info: JobInfo) -> None:
        check_submission_id(info.submission_id)
        info.created_time = info.created_time or time.time()
        with self._connection() as connection:
            try:
                connection.execute(
                    "INSERT INTO jobs VALUES (?, ?, ?, ?)",
                    (info.submission_id, info.status.value, info.created_time, info.to_json()),
                )
            except sqlite3.IntegrityError:
                raise DuplicateJobError(
                    f"a job with submission id {info.submission_id!r} already exists",
                    hint="choose another --submission-id, or leave it out for a generated one",
                ) from None

    def get(self, submission_id: str) -> JobInfo:
        with self._connection() as connection:
            row = connection.execute(
                "SELECT record FROM jobs WHERE submission_id = ?", (submission_id,)
            ).fetchone()
        if row is None:
            raise JobNotFoundError(
                f"no job with submission id {submission_id!r}", hint="see `runenv job list`"
            )
        return JobInfo.from_dict(_loads(row[0]))

    def list(self, status: JobStatus | None = None) -> list[JobInfo]:
        query, args = "SELECT record FROM jobs", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status.value,)  # type: ignore[assignment]
        with self._connection() as connection:
            rows = connection.execute(query + " ORDER BY created_time", args).fetchall()
        return [JobInfo.from_dict(_loads(row[0])) for row in rows]

    def update(
        self, submission_id: str, expect: set[JobStatus] | None = None, **changes: Any
    ) -> bool:
        """Change fields of a record, only if its status is one of ``expect`` (when given).

        Returns whether the change was made. A terminal status is never left.
        """
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT record FROM jobs WHERE submission_id = ?", (submission_id,)
            ).fetchone()
            if row is None:
                raise JobNotFoundError(f"no job with submission id {submission_id!r}")
            info = JobInfo.from_dict(_loads(row[0]))
            if (expect is not None and info.status not in expect) or (
                info.status.is_terminal() and "status" in changes
            ):
                connection.execute("ROLLBACK")
                return False
            for name, value in changes.items():
                setattr(info, name, value)
            connection.execute(
                "UPDATE jobs SET status = ?, record = ? WHERE submission_id = ?",
                (info.status.value, info.to_json(), submission_id),
            )
            connection.execute("COMMIT")
        return True

    def delete(self, submission_id: str) -> None:
        with self._connection() as connection:
            connection.execute("DELETE FROM jobs WHERE submission_id = ?", (submission_id,))
            _release_free_pages(connection)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=_BUSY_SECONDS, isolation_level=None)
        try:
            _prepare(connection)
            yield connection
        except sqlite3.OperationalError as error:
            if not _is_full(error):
                raise
            # SQLite rolled the transaction back: the store holds what it held before.
            full = OSError(errno.ENOSPC, "database or disk is full")
            raise disk_full_error(self.path, "the job store", full, RunenvError) from None
        finally:
            connection.close()


def _is_full(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code == _SQLITE_FULL if code is not None else "disk is full" in str(error)


def _prepare(connection: sqlite3.Connection) -> None:
    """WAL mode (kept in the file: set once) and the schema.

    Changing the journal mode answers "database is locked" at once, without the busy timeout,
    while other connections use the file — as a burst of submissions and their supervisors do —
    so it is set only when missing, and retried.
    """
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                # Before the first table: a new file frees deleted records' pages on request.
                connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_KEPT_BYTES}")
            connection.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(_RETRY_SECONDS)


def _release_free_pages(connection: sqlite3.Connection) -> None:
    """Give the pages of deleted records back to the file system, so the file does not keep
    the size of its largest past. Cheap: only free pages are touched, and only when they are
    many. A file made before incremental auto-vacuum is converted by one VACUUM."""
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    if free < _FREE_PAGES_KEPT:
        return
    with contextlib.suppress(sqlite3.OperationalError):  # busy: the next delete does it
        if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            connection.execute("VACUUM")
        else:
            # A script steps the pragma to its end: execute() would free one page per call.
            connection.executescript("PRAGMA incremental_vacuum")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _loads(text: str) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(text)
    return data
