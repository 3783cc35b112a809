"""What a job of `runenv serve` can reach: private files, a clean environment, and neither the
job store, nor other jobs' files, nor the token."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_job_server_auth import Served, clean_environ, serve

from runenv.jobs import JobClient, JobStatus
from runenv.jobs.store import JobStore

WAIT_S = 60
SERVER_SETTINGS = {
    "RUNENV_TOKEN": "a-token-the-server-was-started-with",
    "RUNENV_ADDRESS": "http://127.0.0.1:1",
    "RUNENV_RAY_MODE": "stock",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("isolation-home")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Served]:
    """A server whose own environment holds runenv settings a job must not see."""
    served = serve({**clean_environ(home), **SERVER_SETTINGS})
    yield served
    served.stop()


@pytest.fixture
def client(server: Served, home: Path, monkeypatch: pytest.MonkeyPatch) -> JobClient:
    monkeypatch.setenv("RUNENV_HOME", str(home))
    for name in SERVER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return JobClient(server.address)


def run_job(client: JobClient, entrypoint: str, env_vars: dict[str, str] | None = None) -> str:
    """Run the job to its end; its log."""
    job_id = client.submit_job(entrypoint, {"env_vars": env_vars or {}})
    deadline = time.monotonic() + WAIT_S
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs
    return logs


def test_records_logs_and_token_are_private(client: JobClient, home: Path) -> None:
    run_job(client, "echo hello")
    jobs = home / "jobs"
    directories = [jobs, home / "auth", *(path for path in jobs.iterdir() if path.is_dir())]
    assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in directories} == {"0o700"}
    files = [path for path in [*jobs.rglob("*"), *(home / "auth").iterdir()] if path.is_file()]
    names = {path.name for path in files}
    assert {"jobs.sqlite", "jobs.sqlite.lock", "job.log", "supervisor.pid", "token"} <= names
    assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {
        path.name: "0o600" for path in files
    }


def test_looser_modes_left_by_an_older_runenv_are_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path))
    tmp_path.chmod(0o755)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    jobs.chmod(0o755)
    sqlite3.connect(jobs / "jobs.sqlite").close()  # as runenv made it before: 0644 (umask 022)
    (jobs / "jobs.sqlite").chmod(0o644)
    JobStore()
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o700
    assert stat.S_IMODE((jobs / "jobs.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # the user's own directory: left


def test_a_job_starts_without_the_servers_settings(client: JobClient, home: Path) -> None:
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    logs = run_job(client, dump, {"MINE": "given"})
    environ = json.loads(next(line for line in logs.splitlines() if line.startswith("{")))
    leaked = {name for name in environ if name.startswith("RUNENV_")} - {
        "RUNENV_HOME",
        "RUNENV_JOB_ID",
        "RUNENV_JOB_RUNTIME_ENV",
    }
    assert leaked == set()
    assert environ["RUNENV_HOME"] == str(home) and environ["MINE"] == "given"
    assert SERVER_SETTINGS["RUNENV_TOKEN"] not in logs


PROBE = textwrap.dedent(
    """
    import sys
    for path in sys.argv[1:]:
        try:
            with open(path, "rb") as handle:
                print("READ", path, handle.read()[:200])
        except OSError as error:
            print("REFUSED", path, type(error).__name__)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
def test_a_job_reads_neither_the_store_nor_other_jobs_nor_the_token(
    client: JobClient, home: Path, tmp_path: Path
) -> None:
    secret = "another-jobs-secret-output"
    first = client.submit_job(f"echo {secret}", {"env_vars": {"DB_PASSWORD": secret}})
    run_job(client, "true")  # the first has ended meanwhile, or is about to
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    targets = [
        home / "jobs" / "jobs.sqlite",
        home / "jobs" / first / "job.log",
        home / "auth" / "token",
    ]
    logs = run_job(client, f"{sys.executable} {probe} {' '.join(map(str, targets))}")
    assert [line.split()[:2] for line in logs.splitlines() if line.startswith("REFUSED")] == [
        ["REFUSED", str(path)] for path in targets
    ], logs
    assert secret not in logs and "READ" not in logs
    assert "no mount namespace" not in logs
    assert secret in client.get_job_logs(first)  # there all along, only not for the job
    assert (home / "jobs" / "jobs.sqlite").stat().st_size > 0  # the covers stayed the job's
    assert os.path.getsize(home / "auth" / "token") > 0


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
def test_a_token_file_given_elsewhere_is_hidden_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "a-token-file-outside-runenv-home"
    token_file = tmp_path / "secrets" / "token"
    token_file.parent.mkdir()
    token_file.write_text(token)
    token_file.chmod(0o600)
    environ = clean_environ(tmp_path / "home")
    served = serve(environ, "--token-file", str(token_file))
    try:
        monkeypatch.setenv("RUNENV_HOME", environ["RUNENV_HOME"])
        client = JobClient(served.address, token=token)
        probe = tmp_path / "probe.py"
        probe.write_text(PROBE)
        logs = run_job(client, f"{sys.executable} {probe} {token_file}")
    finally:
        served.stop()
    assert token not in logs
    assert f"READ {token_file} b''" in logs or f"REFUSED {token_file}" in logs
