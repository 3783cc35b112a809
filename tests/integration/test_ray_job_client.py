"""Ray's own job clients against ``runenv serve``: the ``ray job`` CLI (subprocesses) and
``JobSubmissionClient``, unchanged, with the token passed as Ray passes it. No Ray cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jobserver import JobServer, running_job_server
from ray.job_submission import JobSubmissionClient

from runenv.jobs import JobClient, JobStatus

RAY = str(Path(sys.executable).parent / "ray")  # Ray's CLI, from the test extras
WAIT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobServer]:
    with running_job_server(tmp_path_factory.mktemp("ray-clients")) as server:
        yield server


@pytest.fixture(scope="module")
def ray_environ(server: JobServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Ray's CLI with token auth on and the token in a file (RAY_AUTH_TOKEN_PATH)."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RAY_", "RUNENV_"))
    }
    environ.update(
        HOME=str(tmp_path_factory.mktemp("ray-home")),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(server.token_file),
    )
    return environ


@pytest.fixture(scope="module")
def sdk(server: JobServer) -> JobSubmissionClient:
    # The header as Ray's own loader makes it (its token is cached per process: given here).
    return JobSubmissionClient(server.address, headers=server.auth)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project")
    (project / "main.py").write_text("print(open('data.txt').read())\n")
    (project / "data.txt").write_text("read from the working dir")
    return project


def ray_job(
    environ: dict[str, str], server: JobServer, *args: str
) -> subprocess.CompletedProcess[str]:
    command, rest = args[0], args[1:]
    return subprocess.run(
        [RAY, "job", command, "--address", server.address, *rest],
        capture_output=True,
        text=True,
        env=environ,
        timeout=WAIT_S,
    )


def wait_for_end(sdk: JobSubmissionClient, job_id: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while (status := sdk.get_job_status(job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"{job_id} still {status}"
        time.sleep(0.05)
    return str(status)


def test_cli_submit_with_a_working_dir(
    server: JobServer, ray_environ: dict[str, str], project: Path, sdk: JobSubmissionClient
) -> None:
    result = ray_job(
        ray_environ,
        server,
        "submit",
        "--submission-id",
        "cli-ok",
        "--working-dir",
        str(project),
        "--metadata-json",
        '{"team": "data"}',
        "--entrypoint-num-cpus",
        "2",
        "--",
        "python",
        "main.py",
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "read from the working dir" in output and "succeeded" in output
    info = sdk.get_job_info("cli-ok")
    assert (info.status, info.driver_exit_code, info.metadata) == ("SUCCEEDED", 0, {"team": "data"})
    assert info.start_time is not None and info.end_time is not None
    assert abs(info.end_time / 1000 - time.time()) < 600  # milliseconds, as Ray's are
    raw = httpx.get(f"{server.address}/api/jobs/cli-ok", headers=server.auth).json()
    assert raw["entrypoint_num_cpus"] == 2 and raw["type"] == "SUBMISSION"


def test_cli_failure_status_logs_list_and_delete(
    server: JobServer, ray_environ: dict[str, str], sdk: JobSubmissionClient
) -> None:
    failed = ray_job(
        ray_environ, server, "submit", "--submission-id", "cli-fail", "--",
        "sh", "-c", "echo oops; exit 3",
    )  # fmt: skip
    assert failed.returncode == 1 and "failed" in failed.stdout + failed.stderr
    info = sdk.get_job_info("cli-fail")
    assert (info.status, info.driver_exit_code) == ("FAILED", 3)
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR" and "3" in (info.message or "")
    status = ray_job(ray_environ, server, "status", "cli-fail")
    assert status.returncode == 0 and "failed" in status.stdout + status.stderr
    logs = ray_job(ray_environ, server, "logs", "cli-fail")
    assert logs.returncode == 0 and "oops" in logs.stdout
    listed = ray_job(ray_environ, server, "list")
    assert listed.returncode == 0 and "cli-fail" in listed.stdout + listed.stderr
    deleted = ray_job(ray_environ, server, "delete", "cli-fail")
    assert deleted.returncode == 0, deleted.stderr
    assert "cli-fail" not in [job.submission_id for job in sdk.list_jobs()]


def test_cli_stop_and_follow(
    server: JobServer, ray_environ: dict[str, str], sdk: JobSubmissionClient
) -> None:
    started = ray_job(
        ray_environ, server, "submit", "--no-wait", "--submission-id", "cli-stop", "--",
        "sh", "-c", "echo begun; sleep 300",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + WAIT_S
    while "begun" not in sdk.get_job_logs("cli-stop"):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    stopped = ray_job(ray_environ, server, "stop", "cli-stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout + stopped.stderr
    assert sdk.get_job_status("cli-stop") == "STOPPED"
    followed = ray_job(ray_environ, server, "logs", "--follow", "cli-stop")  # ends: job ended
    assert followed.returncode == 0 and "begun" in followed.stdout


def test_cli_without_the_token_is_refused(server: JobServer, ray_environ: dict[str, str]) -> None:
    environ = {**ray_environ, "RAY_AUTH_TOKEN_PATH": os.devnull, "RAY_AUTH_TOKEN": "x" * 32}
    refused = ray_job(environ, server, "list")
    assert refused.returncode != 0 and "Authentication" in refused.stderr


def test_sdk_submit_tail_and_delete(sdk: JobSubmissionClient, project: Path) -> None:
    job_id = sdk.submit_job(
        entrypoint="python main.py; echo first; sleep 0.5; echo second",
        runtime_env={"working_dir": str(project), "env_vars": {"GREETING": "hi"}},
        metadata={"origin": "sdk"},
        entrypoint_num_cpus=1,
    )

    async def tail() -> str:
        return "".join([chunk async for chunk in sdk.tail_job_logs(job_id)])

    followed = asyncio.run(tail())  # returns once the job has ended
    assert "read from the working dir" in followed and "first" in followed
    assert "second" in followed
    assert wait_for_end(sdk, job_id) == "SUCCEEDED"
    info = sdk.get_job_info(job_id)
    assert info.submission_id == job_id and info.metadata == {"origin": "sdk"}
    assert info.runtime_env is not None and info.runtime_env["env_vars"]["GREETING"]
    assert job_id in [job.submission_id for job in sdk.list_jobs()]
    assert sdk.delete_job(job_id)
    with pytest.raises(RuntimeError, match="404"):
        sdk.get_job_info(job_id)


def test_sdk_stop_and_failure(sdk: JobSubmissionClient) -> None:
    running = sdk.submit_job(entrypoint="sleep 300", submission_id="sdk-stop")
    assert running == "sdk-stop"
    assert sdk.stop_job(running)
    assert wait_for_end(sdk, running) == "STOPPED"
    failing = sdk.submit_job(entrypoint="python -c 'import sys; sys.exit(7)'")
    assert wait_for_end(sdk, failing) == "FAILED"
    assert sdk.get_job_info(failing).driver_exit_code == 7


def test_the_tail_websocket_needs_the_token(server: JobServer) -> None:
    import aiohttp

    async def connect(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            url = f"{server.address}/api/jobs/nope/logs/tail"
            try:
                async with session.ws_connect(url, headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(connect({})) == 401
    assert asyncio.run(connect(server.auth)) == 404  # past the token: no such job
    proxied = {"X-Ray-Authorization": server.auth["Authorization"]}
    assert asyncio.run(connect(proxied)) == 404


def test_runenv_client_reads_the_same_answers(server: JobServer) -> None:
    client = JobClient(server.address, server.token)
    job_id = client.submit_job("echo hello", metadata={"k": "v"}, max_retries=1)
    deadline = time.monotonic() + WAIT_S
    while not (info := client.get_job_info(job_id)).status.is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info.status == JobStatus.SUCCEEDED and info.exit_code == 0
    assert (info.metadata, info.max_retries, info.message) == ({"k": "v"}, 1, "finished")
    assert info.start_time is not None and info.end_time is not None
    assert info.created_time <= info.start_time <= info.end_time <= time.time() + 1  # seconds
    assert job_id in [job.submission_id for job in client.list_jobs()]


def test_sdk_py_modules_and_a_working_dir_holding_one_directory(
    sdk: JobSubmissionClient, tmp_path: Path
) -> None:
    module = tmp_path / "modules" / "mymod"
    module.mkdir(parents=True)
    (module / "__init__.py").write_text("VALUE = 'from py_modules'\n")
    working_dir = tmp_path / "wd"
    (working_dir / "only").mkdir(parents=True)  # Ray does not lift its own packages' one dir
    (working_dir / "only" / "f.txt").write_text("x")
    job_id = sdk.submit_job(
        entrypoint="python -c 'import os, mymod; print(mymod.VALUE, os.listdir())'",
        runtime_env={"py_modules": [str(module)], "working_dir": str(working_dir)},
    )
    assert wait_for_end(sdk, job_id) == "SUCCEEDED", sdk.get_job_logs(job_id)
    assert "from py_modules ['only']" in sdk.get_job_logs(job_id)


def test_ray_package_uploads_are_checked(server: JobServer, tmp_path: Path) -> None:
    url = f"{server.address}/api/packages/gcs"
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("../escaped.txt", "x")
    put = httpx.put(f"{url}/_ray_pkg_0bad.zip", content=unsafe.read_bytes(), headers=server.auth)
    assert put.status_code == 400 and "outside" in put.json()["error"]
    garbage = httpx.put(f"{url}/_ray_pkg_0bad.zip", content=b"not a zip", headers=server.auth)
    assert garbage.status_code == 400 and "zip" in garbage.json()["error"]
    assert httpx.get(f"{url}/_ray_pkg_0bad.zip", headers=server.auth).status_code == 404
    named = httpx.put(f"{url}/evil.zip", content=b"x", headers=server.auth)
    assert named.status_code == 400 and "not a Ray package" in named.json()["error"]
    assert not list(server.home.rglob("escaped.txt"))
