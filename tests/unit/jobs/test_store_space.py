"""The job store gives back the space of deleted records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runenv.jobs.models import JobInfo
from runenv.jobs.store import JobStore


def store_bytes(path: Path) -> int:
    return sum(
        candidate.stat().st_size
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


def big_record(name: str) -> JobInfo:
    return JobInfo(submission_id=name, entrypoint="true", metadata={"blob": "x" * 20_000_000})


def test_deleting_a_big_record_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    store.insert(JobInfo(submission_id="small", entrypoint="true"))
    store.insert(big_record("big"))
    assert store_bytes(path) > 20_000_000
    store.delete("big")
    assert store_bytes(path) < 5_000_000
    assert store.get("small").entrypoint == "true"


def test_a_store_made_before_auto_vacuum_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    legacy = sqlite3.connect(path, isolation_level=None)
    legacy.execute("PRAGMA journal_mode=WAL")
    legacy.execute(
        "CREATE TABLE jobs (submission_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
        "created_time REAL NOT NULL, record TEXT NOT NULL)"
    )
    legacy.close()
    store = JobStore(path)
    store.insert(big_record("big"))
    store.delete("big")
    assert store_bytes(path) < 5_000_000
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on


def test_a_full_disk_is_a_clear_error_and_the_store_keeps_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runenv.errors import RunenvError
    from runenv.jobs import store as store_module

    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    store.insert(JobInfo(submission_id="kept", entrypoint="true"))
    prepare = store_module._prepare

    def with_no_room(connection: sqlite3.Connection) -> None:
        prepare(connection)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL

    monkeypatch.setattr(store_module, "_prepare", with_no_room)
    with pytest.raises(RunenvError) as caught:
        store.insert(big_record("too-big"))
    assert caught.value.message.startswith("the disk is full: cannot write the job store")
    assert caught.value.hint is not None and "df -h" in caught.value.hint
    monkeypatch.setattr(store_module, "_prepare", prepare)
    assert [job.submission_id for job in store.list()] == ["kept"]
