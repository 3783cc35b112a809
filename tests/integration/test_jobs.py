"""Jobs end to end through the CLI (subprocesses): embedded, and against a job server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import GatedIndex
from wheels import build_wheel

from runenv.jobs import JobClient, JobStatus

RUNENV = [sys.executable, "-m", "runenv"]
WAIT_S = 60


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNENV_ADDRESS", raising=False)
    return dict(os.environ)


def runenv(
    *args: str, environ: dict[str, str], cwd: Path | None = None, timeout: float = WAIT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=timeout
    )


def wait_for_end(client: JobClient, job_id: str) -> JobStatus:
    deadline = time.monotonic() + WAIT_S
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, f"{job_id} still {status}"
        time.sleep(0.05)
    return status


def pids_in_log(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("PID ")]


# --- embedded ----------------------------------------------------------------------------


def test_success_with_a_working_dir(environ: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("import os\nprint(open('data.txt').read(), os.environ['A'])\n")
    (project / "data.txt").write_text("from the working dir")
    result = runenv(
        "job",
        "submit",
        "--working-dir",
        str(project),
        "--runtime-env-json",
        json.dumps({"env_vars": {"A": "set"}}),
        "--",
        "python",
        "main.py",
        environ=environ,
    )
    assert result.returncode == 0, result.stderr
    assert "from the working dir set" in result.stdout
    job_id = result.stderr.split("submitted ")[1].split()[0]
    info = json.loads(runenv("job", "show", job_id, environ=environ).stdout)
    assert info["status"] == "SUCCEEDED" and info["exit_code"] == 0
    assert info["runtime_env"]["working_dir"].endswith(".zip")
    assert info["start_time"] <= info["end_time"]


def test_failing_exit_code(environ: dict[str, str]) -> None:
    result = runenv(
        "job", "submit", "--submission-id", "fails", "--", "sh", "-c", "exit 3", environ=environ
    )
    assert result.returncode == 1
    status = runenv("job", "status", "fails", environ=environ).stdout.strip()
    assert status == "FAILED: the entrypoint exited with code 3"


def test_duplicate_submission_id(environ: dict[str, str]) -> None:
    assert (
        runenv("job", "submit", "--submission-id", "once", "--", "true", environ=environ).returncode
        == 0
    )
    again = runenv("job", "submit", "--submission-id", "once", "--", "true", environ=environ)
    assert again.returncode == 1
    assert "error: a job with submission id 'once' already exists" in again.stderr


def test_stop_ends_every_process_of_the_job(environ: dict[str, str]) -> None:
    script = "sleep 300 & echo PID $!; echo PID $$; wait"
    job_id = runenv(
        "job", "submit", "--no-wait", "--", "sh", "-c", script, environ=environ
    ).stdout.strip()
    client = JobClient()
    deadline = time.monotonic() + WAIT_S
    while len(pids := pids_in_log(client.get_job_logs(job_id))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    delete = runenv("job", "delete", job_id, environ=environ)
    assert delete.returncode == 1 and "only ended jobs can be deleted" in delete.stderr
    stopped = runenv("job", "stop", job_id, environ=environ)
    assert stopped.stdout.strip() == f"{job_id}: STOPPED"
    assert not [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert runenv("job", "delete", job_id, environ=environ).returncode == 0


def test_retries_keep_each_attempts_log(environ: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt-done"
    config = tmp_path / "job.yaml"
    script = f"if [ -e {marker} ]; then echo second; else touch {marker}; echo first; exit 1; fi"
    config.write_text(f"name: flaky\nmax_retries: 2\nentrypoint: >-\n  sh -c '{script}'\n")
    result = runenv("job", "submit", "--config", str(config), environ=environ)
    assert result.returncode == 0, result.stderr
    assert "first" in result.stdout and "--- attempt 2 of 3 ---" in result.stdout
    assert "second" in result.stdout
    [info] = JobClient().list_jobs()
    assert (info.attempts, info.metadata["name"]) == (2, "flaky")


def test_timeout(environ: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("entrypoint: sleep 300\ntimeout_s: 1\nmax_retries: 3\n")
    result = runenv("job", "submit", "--config", str(config), environ=environ)
    assert result.returncode == 1
    [info] = JobClient().list_jobs()
    assert (info.status, info.message, info.attempts) == (
        JobStatus.FAILED,
        "timed out after 1 s",
        1,
    )


def test_env_setup_failure_fails_the_job(environ: dict[str, str]) -> None:
    env = {
        "pip": {
            "packages": ["runenv-nope"],
            "pip_install_options": ["--no-index"],
            "lock": {"python": "3.11", "requirements": ["runenv-nope==1.0"]},
        }
    }
    result = runenv(
        "job", "submit", "--runtime-env-json", json.dumps(env), "--", "true", environ=environ
    )
    assert result.returncode == 1
    [info] = JobClient().list_jobs()
    assert info.status == JobStatus.FAILED
    assert info.message.startswith("runtime env setup failed: installing pip packages failed")


def test_logs_follow_streams_until_the_end(environ: dict[str, str]) -> None:
    script = "for i in 1 2 3; do echo line $i; sleep 0.2; done"
    job_id = runenv(
        "job", "submit", "--no-wait", "--", "sh", "-c", script, environ=environ
    ).stdout.strip()
    followed = runenv("job", "logs", job_id, "--follow", environ=environ)
    assert [line for line in followed.stdout.splitlines() if line.startswith("line")] == [
        "line 1",
        "line 2",
        "line 3",
    ]
    assert JobClient().get_job_status(job_id) == JobStatus.SUCCEEDED


def test_the_job_env_is_the_parent_of_its_tasks(environ: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(
        "import os, runenv\n"
        "@runenv.remote\n"
        "def probe():\n"
        "    return os.environ['FROM_JOB'], os.environ.get('FROM_TASK'), open('data.txt').read()\n"
        "print(runenv.get(probe.options(runtime_env={'env_vars': {'FROM_TASK': 't'}}).remote()))\n"
    )
    (tmp_path / "data.txt").write_text("shipped")
    result = runenv(
        "job",
        "submit",
        "--working-dir",
        str(tmp_path),
        "--runtime-env-json",
        json.dumps({"env_vars": {"FROM_JOB": "j"}}),
        "--",
        "python",
        "driver.py",
        environ=environ,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "('j', 't', 'shipped')" in result.stdout


def test_secrets_are_masked_in_listings(environ: dict[str, str]) -> None:
    env = {"env_vars": {"API_TOKEN": "s3cr3t", "LEVEL": "debug"}}
    runenv("job", "submit", "--runtime-env-json", json.dumps(env), "--", "true", environ=environ)
    listing = runenv("job", "list", "--json", environ=environ).stdout
    assert "s3cr3t" not in listing and '"API_TOKEN": "****"' in listing and "debug" in listing


def test_a_burst_of_submissions(environ: dict[str, str]) -> None:
    client = JobClient()
    with ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(lambda i: client.submit_job("true", submission_id=f"burst-{i}"), range(100))
        )
    assert len(set(ids)) == 100
    assert {wait_for_end(client, job_id) for job_id in ids} == {JobStatus.SUCCEEDED}
    assert sorted(info.submission_id for info in client.list_jobs()) == sorted(ids)


def test_supervisor_killed_mid_job(environ: dict[str, str]) -> None:
    client = JobClient()
    job_id = client.submit_job("echo PID $$; sleep 300")
    deadline = time.monotonic() + WAIT_S
    while not (pids := pids_in_log(client.get_job_logs(job_id))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervisor = client.get_job_info(job_id).supervisor_pid
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    assert wait_for_end(client, job_id) == JobStatus.FAILED
    assert client.get_job_info(job_id).message == "supervisor lost"
    deadline = time.monotonic() + WAIT_S
    while psutil.pid_exists(pids[0]) and psutil.Process(pids[0]).status() != "zombie":
        assert time.monotonic() < deadline, "the job's process outlived its supervisor"
        time.sleep(0.05)


# --- against a server --------------------------------------------------------------------


@dataclass
class Server:
    address: str
    token: str
    process: subprocess.Popen[bytes]


def start_server(environ: dict[str, str], port: int, token_file: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*RUNENV, "serve", "--port", str(port), "--token-file", str(token_file)],
        env=environ,
        stderr=subprocess.DEVNULL,
    )
    token = token_file.read_text().strip()
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            httpx.get(
                f"http://127.0.0.1:{port}/api/version",
                headers={"Authorization": f"Bearer {token}"},
                timeout=1,
            ).raise_for_status()
            return process
        except httpx.HTTPError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.fixture
def server(environ: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "test-token-0123456789"
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    token_file.chmod(0o600)  # the server refuses a token others may read
    server = Server(f"http://127.0.0.1:{port}", token, start_server(environ, port, token_file))
    yield server
    server.process.kill()  # the one running now: a test may have restarted it
    server.process.wait()


def test_submit_to_a_server_uploads_the_working_dir(
    server: Server, environ: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "remote-project"
    project.mkdir()
    (project / "main.py").write_text("print(open('data.txt').read())\n")
    (project / "data.txt").write_text("uploaded to the server")
    client_env = {
        **environ,
        "RUNENV_HOME": str(tmp_path / "client-home"),
        "RUNENV_TOKEN": server.token,
    }
    result = runenv(
        "job",
        "submit",
        "--address",
        server.address,
        "--working-dir",
        str(project),
        "--",
        "python",
        "main.py",
        environ=client_env,
    )
    assert result.returncode == 0, result.stderr
    assert "uploaded to the server" in result.stdout
    failing = runenv(
        "job", "submit", "--address", server.address, "--", "sh", "-c", "exit 5", environ=client_env
    )
    assert failing.returncode == 1
    listing = runenv("job", "list", "--address", server.address, "--json", environ=client_env)
    assert [job["status"] for job in json.loads(listing.stdout)] == ["SUCCEEDED", "FAILED"]


def test_a_remote_submission_is_prepared_on_the_submitting_machine(
    server: Server, environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("import runenv_demo_a\nprint('demo', runenv_demo_a.VERSION)\n")
    client_home = tmp_path / "client-home"
    monkeypatch.setenv("RUNENV_HOME", str(client_home))  # the server keeps its own home
    client = JobClient(server.address, server.token)
    env = {
        "working_dir": str(project),
        "pip": {
            "packages": ["Runenv_Demo_A"],
            "pip_install_options": ["--no-index", "--find-links", str(wheels)],
        },
    }
    job_id = client.submit_job("python main.py", runtime_env=env)
    assert wait_for_end(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "demo 1.0" in client.get_job_logs(job_id)
    recorded = client.get_job_info(job_id).runtime_env
    assert recorded["pip"]["lock"]["requirements"] == ["runenv-demo-a==1.0"]
    assert recorded["working_dir"].startswith("file://")  # in the server's store, by URI
    # Resolved by the client (the lock is in its cache); the server only installed the lock.
    client_resources = client_home / "runtime_resources"
    server_resources = Path(environ["RUNENV_HOME"]) / "runtime_resources"
    assert [entry.name for entry in (client_resources / "lock-v1").iterdir() if entry.is_dir()]
    assert not (server_resources / "lock-v1").exists()
    assert (server_resources / "python-v1").is_dir()
    assert not (client_resources / "python-v1").exists()


def test_token_is_required(server: Server, environ: dict[str, str]) -> None:
    assert httpx.get(f"{server.address}/api/jobs/").status_code == 401
    wrong = httpx.get(f"{server.address}/api/jobs/", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    result = runenv("job", "list", "--address", server.address, environ=environ)
    assert result.returncode == 1 and "error: missing or wrong token" in result.stderr


def test_server_killed_mid_job_loses_nothing(
    server: Server, environ: dict[str, str], tmp_path: Path
) -> None:
    client = JobClient(server.address, server.token)
    marker = tmp_path / "go"
    job_id = client.submit_job(f"while [ ! -e {marker} ]; do sleep 0.05; done; echo done")
    assert client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING)
    server.process.kill()
    server.process.wait()
    marker.touch()  # the job ends while the server is down
    port = int(server.address.rsplit(":", 1)[1])
    server.process = start_server(environ, port, tmp_path / "token")
    assert wait_for_end(client, job_id) == JobStatus.SUCCEEDED
    assert "done" in client.get_job_logs(job_id)


def test_package_upload_is_checked(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    bad = httpx.put(
        f"{server.address}/api/packages/{'0' * 64}.zip", content=b"not a zip", headers=headers
    )
    assert bad.status_code == 400 and "does not match its digest" in bad.json()["error"]
    unnamed = httpx.put(f"{server.address}/api/packages/notes.txt", content=b"x", headers=headers)
    assert unnamed.status_code == 400 and "not a package name" in unnamed.json()["error"]


@pytest.mark.parametrize("bad", ["../precious", "/tmp/x", "a b"])
def test_submission_ids_are_names_not_paths(environ: dict[str, str], bad: str) -> None:
    result = runenv("job", "submit", "--submission-id", bad, "--", "true", environ=environ)
    assert result.returncode == 1
    assert (
        "error: invalid submission id" in result.stderr or "error: no entrypoint" in result.stderr
    )
    assert not (Path(environ["RUNENV_HOME"]) / "precious").exists()
    shown = runenv("job", "show", "../jobs", environ=environ)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr


def test_stop_while_the_env_is_being_set_up(
    environ: dict[str, str], gated_index: GatedIndex
) -> None:
    env = {"pip": gated_index.locked_pip()}
    client = JobClient()
    job_id = client.submit_job("echo never", runtime_env=env)
    assert gated_index.requested.wait(WAIT_S), "the install never started"
    started = time.monotonic()
    assert client.stop_job(job_id)
    assert wait_for_end(client, job_id) == JobStatus.STOPPED
    assert time.monotonic() - started < 15  # not held until the install would have finished
    info = client.get_job_info(job_id)
    assert info.message == "stopped while its env was being set up"
    assert "never" not in client.get_job_logs(job_id).replace("echo never", "")


def test_a_web_page_cannot_submit_jobs(server: Server, tmp_path: Path) -> None:
    """Cross-site text/plain POSTs, foreign Origins and rebound Hosts are refused before
    anything runs, even with the token (which a page could have learnt)."""
    marker = tmp_path / "ran"
    job = {"entrypoint": f"touch {marker}"}
    auth = {"Authorization": f"Bearer {server.token}"}
    port = server.address.rsplit(":", 1)[1]
    text_plain = httpx.post(
        f"{server.address}/api/jobs/",
        content=json.dumps(job),
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert text_plain.status_code == 415
    foreign_origin = httpx.post(
        f"{server.address}/api/jobs/", json=job, headers={**auth, "Origin": "http://evil.test"}
    )
    assert foreign_origin.status_code == 403 and "Origin" in foreign_origin.json()["error"]
    rebound = httpx.post(
        f"{server.address}/api/jobs/", json=job, headers={**auth, "Host": f"evil.test:{port}"}
    )
    assert rebound.status_code == 403 and "Host" in rebound.json()["error"]
    listed = httpx.get(f"{server.address}/api/jobs/", headers=auth).json()
    assert listed == [] and not marker.exists()  # nothing ran
    own = httpx.get(f"{server.address}/api/jobs/", headers={**auth, "Origin": server.address})
    assert own.status_code == 200  # the server's own origin is fine
