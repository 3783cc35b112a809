"""The launcher where runenv uses it: resolves, job entrypoints, workers (real processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import GatedIndex, processes_under

import runenv
from runenv import RuntimeEnv
from runenv.errors import SetupTimeoutError
from runenv.jobs import JobClient, JobStatus, supervisor
from runenv.jobs.manager import JobManager
from runenv.jobs.models import JobInfo
from runenv.materialize import prepare

WAIT_S = 60


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    monkeypatch.delenv("RUNENV_ADDRESS", raising=False)
    return tmp_path / "home"


def compiles_under(home: Path) -> list[str]:
    return processes_under(home, " pip compile ")


def test_a_resolve_that_times_out_is_retried_at_once(gated_index: GatedIndex, home: Path) -> None:
    env = RuntimeEnv(
        pip={
            "packages": ["runenv-slow"],
            "pip_install_options": ["--no-index", "--find-links", gated_index.url],
        },
        config={"setup_timeout_seconds": 2},
    )
    with pytest.raises(SetupTimeoutError) as caught:
        prepare(env)
    assert gated_index.requested.is_set()  # stuck fetching the wheel, not failing early
    assert caught.value.step == "resolve"
    assert "setup_timeout_seconds" in (caught.value.hint or "")
    assert compiles_under(home) == []  # the resolver was killed with its group

    gated_index.gate.set()
    started = time.monotonic()
    locked = prepare(env)  # not a remembered failure: resolved again at once
    assert locked.pip is not None and locked.pip.lock is not None
    assert locked.pip.lock.requirements == ("runenv-slow==1.0",)
    assert time.monotonic() - started < 30


def test_a_job_entrypoint_starts_with_no_signal_ignored() -> None:
    """The supervisor is started in a shell's background (SIGINT, SIGQUIT ignored there); the
    entrypoint must not inherit that."""
    client = JobClient()
    job_id = client.submit_job("grep SigIgn /proc/self/status")
    deadline = time.monotonic() + WAIT_S
    while not client.get_job_status(job_id).is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(line for line in client.get_job_logs(job_id).splitlines() if "SigIgn" in line)
    ignored = int(line.split()[1], 16)
    assert ignored & (1 << 1) == 0 and ignored & (1 << 2) == 0  # SIGINT (2), SIGQUIT (3)
    info = client.get_job_info(job_id)
    assert info.supervisor_pid is not None and info.supervisor_pid != os.getpid()


@runenv.remote
def lineage() -> tuple[int, int, int]:
    return os.getpid(), os.getppid(), os.getpgid(0)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the death signal's effect on Linux")
def test_workers_are_ours_in_a_group_of_their_own() -> None:
    runenv.init()
    try:
        pid, parent, group = runenv.get(lineage.remote())
    finally:
        runenv.shutdown()
    assert parent == os.getpid()
    assert group == pid != os.getpgrp()


def test_a_supervisor_still_starting_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spawn returns before the supervisor's Python has started; until it records itself, its
    pid file keeps the job from being marked lost, however long the start takes."""
    release = tmp_path / "release"
    slow_start = f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.02)\n"
    monkeypatch.setattr(supervisor, "_DETACHED", slow_start)
    manager = JobManager()
    manager.store.insert(JobInfo("starting", "true", created_time=time.time() - 3600))
    supervisor.spawn("starting")
    assert supervisor.spawned_alive("starting")
    assert manager.info("starting").status == JobStatus.PENDING
    release.touch()  # it ends without recording anything: now it is lost
    deadline = time.monotonic() + WAIT_S
    while (info := manager.info("starting")).status == JobStatus.PENDING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (info.status, info.message) == (JobStatus.FAILED, "supervisor lost")
