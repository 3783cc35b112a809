"""Content hashes of files, and a stat-keyed cache of them (as git's index does).

A cached hash is used only when the file's size, mtime, ctime and inode are unchanged (ctime
catches tools that restore an old mtime) and the file was last modified well before it was
hashed: a write within the file system's timestamp granularity of the hashing could otherwise
leave the stat unchanged ("racily clean" in git's terms). Such entries are hashed again next
time, and are trusted after that.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from runenv.packaging.walk import FileEntry

RACY_WINDOW_NS = 2_000_000_000  # covers coarse timestamps (FAT, HFS+: 1-2 s)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    hashed_at_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID
"""


class HashCache:
    """File hashes keyed by (path, size, mtime_ns, ctime_ns, inode), kept in SQLite across runs.

    It is only a cache: if the database cannot be opened or written, hashes are computed again.
    """

    def __init__(self, database: Path | None) -> None:
        self._connection = _connect(database) if database is not None else None
        self._pending: list[tuple[str, int, int, int, int, int, str]] = []
        self.hits = 0
        self.misses = 0

    def lookup(self, entries: Iterable[FileEntry]) -> dict[str, str]:
        """Cached hashes of the entries still valid, by ``entry.source``."""
        wanted = {entry.source: entry for entry in entries}
        found: dict[str, str] = {}
        for row in self._rows(list(wanted)):
            source, size, mtime_ns, ctime_ns, inode, hashed_at_ns, sha256 = row
            entry = wanted[source]
            recorded = (size, mtime_ns, ctime_ns, inode)
            unchanged = (entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode) == recorded
            if unchanged and mtime_ns < hashed_at_ns - RACY_WINDOW_NS:
                found[source] = sha256
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def record(self, entry: FileEntry, sha256: str, hashed_at_ns: int) -> None:
        stat_key = (entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode)
        row = (entry.source, *stat_key, hashed_at_ns, sha256)
        self._pending.append(row)

    def flush(self) -> None:
        rows, self._pending = self._pending, []
        if self._connection is None or not rows:
            return
        with contextlib.suppress(sqlite3.Error), self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )

    def close(self) -> None:
        self.flush()
        if self._connection is not None:
            self._connection.close()

    def _rows(self, sources: list[str]) -> list[tuple[str, int, int, int, int, int, str]]:
        if self._connection is None or not sources:
            return []
        rows = []
        try:
            for start in range(0, len(sources), 500):  # stay under SQLite's variable limit
                batch = sources[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows += self._connection.execute(
                    f"SELECT * FROM file_hashes WHERE path IN ({marks})", batch
                ).fetchall()
        except sqlite3.Error:
            return []
        return rows


def now_ns() -> int:
    return time.time_ns()


def _connect(database: Path) -> sqlite3.Connection | None:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(database, timeout=5, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
        connection.isolation_level = "DEFERRED"  # implicit transactions again, for executemany
        return connection
    except sqlite3.Error:
        return None
