"""Secrets in job records: masked in every listing, URI credentials in no output at all."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runenv.jobs import JobClient, JobStatus

RUNENV = [sys.executable, "-m", "runenv"]
WAIT_S = 60
PASSWORD = "pw-Zq81vLx0"  # a test value that must never be printed


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNENV_ADDRESS", raising=False)
    return dict(os.environ)


def runenv(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, timeout=WAIT_S
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_env_vars_masked_by_name_and_shape_unless_the_owner_asks(environ: dict[str, str]) -> None:
    env_vars = {
        "DATABASE_URL": f"postgres://app:{PASSWORD}@db:5432/app",
        "AUTH": "plain-auth-value",
        "MY_PASSWD": "hunter2-hunter2",
        "OPAQUE": "sk-9fQ2xLr7TbVn3KpZ8wYc1HdJ",
        "LEVEL": "debug",
    }
    env = json.dumps({"env_vars": env_vars})
    submitted = runenv("job", "submit", "--runtime-env-json", env, "--", "true", environ=environ)
    assert submitted.returncode == 0, submitted.stderr
    job_id = JobClient().list_jobs()[0].submission_id
    for args in (("list", "--json"), ("show", job_id), ("list",)):
        shown = runenv("job", *args, environ=environ).stdout
        for secret in (PASSWORD, "plain-auth-value", "hunter2", "sk-9fQ2xLr7TbVn3KpZ8wYc1HdJ"):
            assert secret not in shown, (args, secret)
        if args[0] != "list" or len(args) > 1:
            assert "debug" in shown and "postgres://app:****@db:5432/app" in shown
    owner = json.loads(runenv("job", "show", job_id, "--show-secrets", environ=environ).stdout)
    assert owner["runtime_env"]["env_vars"] == env_vars


def test_a_uri_password_never_appears_in_any_output(environ: dict[str, str]) -> None:
    """Progress lines, the error, the job's log, its record as shown: the password nowhere."""
    uri = f"https://reader:{PASSWORD}@127.0.0.1:{closed_port()}/code.zip"
    env = json.dumps({"working_dir": uri})
    submitted = runenv("job", "submit", "--runtime-env-json", env, "--", "true", environ=environ)
    job_id = JobClient().list_jobs()[0].submission_id
    deadline = time.monotonic() + WAIT_S
    while not (info := JobClient().get_job_info(job_id)).status.is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info.status == JobStatus.FAILED
    outputs = {
        "submit": submitted.stdout + submitted.stderr,
        "logs": runenv("job", "logs", job_id, environ=environ).stdout,
        "show": runenv("job", "show", job_id, environ=environ).stdout,
        "status": runenv("job", "status", job_id, environ=environ).stdout,
    }
    assert "reader:****@127.0.0.1" in outputs["logs"]  # what failed is still said
    for name, text in outputs.items():
        assert PASSWORD not in text, name
    home = Path(environ["RUNENV_HOME"])
    for path in home.rglob("*.log"):
        assert PASSWORD not in path.read_text(errors="replace"), path


def test_a_server_masks_secrets_in_every_answer(tmp_path: Path) -> None:
    """Over HTTP: job details and listings masked; the owner asks for them in clear."""
    import httpx
    from jobserver import running_job_server

    env_vars = {"DB": f"postgres://app:{PASSWORD}@db/app", "API_KEY": "k-1", "LEVEL": "debug"}
    with running_job_server(tmp_path) as server:
        client = JobClient(server.address, token=server.token)
        job_id = client.submit_job("true", {"env_vars": env_vars})
        for path in (f"/api/jobs/{job_id}", "/api/jobs/"):
            answer = httpx.get(server.address + path, headers=server.auth).text
            assert PASSWORD not in answer and "k-1" not in answer, path
            assert "debug" in answer and "postgres://app:****@db/app" in answer
        shown = JobClient(server.address, token=server.token, show_secrets=True)
        assert shown.get_job_info(job_id).runtime_env["env_vars"] == env_vars
        masked = client.get_job_info(job_id).runtime_env["env_vars"]
        assert masked["API_KEY"] == "****"
