"""The job store under contention: a connection opened while another holds the file's lock
waits for it instead of failing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from runenv.jobs.models import JobInfo
from runenv.jobs.store import JobStore


def test_a_new_store_waits_for_a_lock_held_on_its_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)  # a file not yet in WAL mode
    holder.execute("BEGIN EXCLUSIVE")
    outcome: list[BaseException | None] = []

    def insert() -> None:
        try:
            JobStore(path).insert(JobInfo(submission_id="waited", entrypoint="true"))
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=insert)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # waiting, not failed with "database is locked"
    holder.execute("COMMIT")
    holder.close()
    thread.join(30)
    assert outcome == [None]
    assert JobStore(path).get("waited").entrypoint == "true"
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_many_processes_creating_the_store_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runenv.jobs.models import JobInfo\n"
        "from runenv.jobs.store import JobStore\n"
        "store = JobStore(Path(sys.argv[1]))\n"
        "store.insert(JobInfo(submission_id=sys.argv[2], entrypoint='true'))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"job-{index}"])
        for index in range(16)
    ]
    assert [process.wait(60) for process in processes] == [0] * 16
    assert len(JobStore(path).list()) == 16
