"""What the job server and supervisors bound: request bodies, log reads, idle tails, retries."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from peak_rss import PeakRss

from runenv.jobs import JobClient, JobStatus
from runenv.jobs.supervisor import log_path

RUNENV = [sys.executable, "-m", "runenv"]
WAIT_S = 60
TOKEN = "bounds-test-token-0123456789abcdef"
MB = 1024 * 1024


@dataclass
class Server:
    address: str
    process: subprocess.Popen[bytes]

    def client(self, **options: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.Client(base_url=self.address, headers=headers, **options)  # type: ignore[arg-type]

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNENV_ADDRESS", raising=False)
    return dict(os.environ)


@pytest.fixture
def server(environ: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    command = [*RUNENV, "serve", "--port", str(port), "--token-file", str(token_file)]
    process = subprocess.Popen(command, env=environ, stderr=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_up(server)
        yield server
    finally:
        process.kill()
        process.wait()


def wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + WAIT_S * 2  # a loaded machine starts Python slowly
    with server.client(timeout=1) as client:
        while True:
            try:
                client.get("/api/version").raise_for_status()
                return
            except httpx.HTTPError:
                assert server.process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)


def submit(client: httpx.Client, entrypoint: str, **fields: object) -> str:
    response = client.post("/api/jobs/", json={"entrypoint": entrypoint, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["submission_id"])


def wait_for_end(client: httpx.Client, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_S
    while True:
        info: dict[str, object] = client.get(f"/api/jobs/{job_id}").json()
        if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


# --- request bodies ------------------------------------------------------------------------


def test_a_20_mb_body_is_refused_with_bounded_memory(server: Server) -> None:
    body = b'{"entrypoint": "echo ' + b"x" * (20 * MB) + b'"}'
    with server.client(timeout=WAIT_S) as client:
        before = server.rss()
        with PeakRss(server.process.pid, every_s=0.02) as rss:
            response = client.post(
                "/api/jobs/", content=body, headers={"Content-Type": "application/json"}
            )
        assert response.status_code == 413
        assert "RUNENV_MAX_REQUEST_MB" in response.json()["hint"]
        assert rss.peak - before < 30 * MB, (before, rss.peak)
        assert client.get("/api/jobs/").json() == []  # nothing recorded


def test_a_chunked_body_is_counted_as_it_arrives(server: Server) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"entrypoint": "echo '
        for _ in range(20 * 16):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}'

    with server.client(timeout=WAIT_S) as client:
        before = server.rss()
        response = client.post(
            "/api/jobs/", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert server.rss() - before < 30 * MB
        assert client.get("/api/jobs/").json() == []


def test_a_body_under_the_limit_is_accepted(server: Server) -> None:
    with server.client(timeout=WAIT_S) as client:
        job_id = submit(client, "true", metadata={"note": "y" * MB})
        assert wait_for_end(client, job_id)["status"] == "SUCCEEDED"


# --- logs --------------------------------------------------------------------------------------


def finished_job_with_log(client: httpx.Client, content: bytes) -> tuple[str, Path]:
    """A job that has ended, its log replaced by ``content``."""
    job_id = submit(client, "true")
    assert wait_for_end(client, job_id)["status"] == "SUCCEEDED"
    path = log_path(job_id)
    path.write_bytes(content)
    return job_id, path


def big_log(path: Path, megabytes: int) -> int:
    line = 'log line with é and € and 𝄞, quotes " and a backslash \\ \n'.encode()
    block = line * (MB // len(line))
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(block)
    return len(block) * megabytes


def test_a_100_mb_log_is_streamed_with_bounded_memory(server: Server) -> None:
    with server.client(timeout=WAIT_S) as client:
        job_id, path = finished_job_with_log(client, b"")
        size = big_log(path, 100)
        before = server.rss()
        received = 0
        with PeakRss(server.process.pid, every_s=0.02) as rss:
            with client.stream("GET", f"/api/jobs/{job_id}/logs") as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    received += len(chunk)
            with client.stream("GET", f"/api/jobs/{job_id}/logs/tail") as response:
                tailed = sum(len(chunk) for chunk in response.iter_bytes())
        assert tailed == size and received > size  # escaped: longer than the log itself
        assert rss.peak - before < 30 * MB, (before, rss.peak)


def test_the_streamed_json_is_the_log_exactly(server: Server) -> None:
    with server.client(timeout=WAIT_S) as client:
        job_id, path = finished_job_with_log(client, b"")
        big_log(path, 3)  # several chunks, characters split across their edges
        path.open("ab").write(b"\xff invalid byte, and a split \xe2\x82")
        logs = client.get(f"/api/jobs/{job_id}/logs").json()["logs"]
        assert logs == path.read_bytes().decode(errors="replace")


def test_log_windows_by_byte_offset(server: Server) -> None:
    content = "".join(f"{index} é€\n" for index in range(10_000)).encode()
    with server.client(timeout=WAIT_S) as client:
        job_id, _ = finished_job_with_log(client, content)
        url = f"/api/jobs/{job_id}/logs"
        window = client.get(url, params={"offset": 100, "limit": 50}).json()
        assert window["offset"] == 100 and window["size"] == len(content)
        assert window["logs"].encode() == content[100 : window["next_offset"]]
        assert 46 < window["next_offset"] - 100 <= 50  # never ends inside a character
        pieces, offset = [], 0
        while offset < len(content):
            window = client.get(url, params={"offset": offset, "limit": 4096}).json()
            pieces.append(window["logs"])
            offset = window["next_offset"]
        assert "".join(pieces).encode() == content
        last = client.get(url, params={"offset": -30}).json()
        assert last["next_offset"] == len(content)
        assert last["logs"].encode() == content[last["offset"] :]
        tailed = client.get(f"{url}/tail", params={"offset": -30}).content
        assert tailed == content[last["offset"] :]
        refused = client.get(url, params={"offset": 0, "limit": 10**9})
        assert refused.status_code == 400 and "limit" in refused.json()["error"]


def test_a_tail_ends_when_the_job_ends(server: Server) -> None:
    script = "echo first; sleep 1.5; echo second"
    with server.client(timeout=httpx.Timeout(WAIT_S)) as client:
        job_id = submit(client, f"sh -c '{script}'")
        with client.stream("GET", f"/api/jobs/{job_id}/logs/tail") as response:
            text = b"".join(response.iter_bytes()).decode()
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "SUCCEEDED"
    assert "first\n" in text and "second\n" in text and "job succeeded" in text


def test_idle_tails_cost_almost_no_cpu(server: Server) -> None:
    with server.client(timeout=httpx.Timeout(WAIT_S)) as client:
        job_id = submit(client, "sleep 30")
        deadline = time.monotonic() + WAIT_S
        while client.get(f"/api/jobs/{job_id}").json()["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stop = threading.Event()

        def tail() -> None:
            own = httpx.Client(base_url=server.address, headers=client.headers)
            path = f"/api/jobs/{job_id}/logs/tail"
            with own, own.stream("GET", path, timeout=None) as reply:
                for _ in reply.iter_bytes():
                    if stop.is_set():
                        return

        tails = [threading.Thread(target=tail, daemon=True) for _ in range(20)]
        for thread in tails:
            thread.start()
        process = psutil.Process(server.process.pid)
        time.sleep(2)  # the polls back off to once a second: measure after that
        start = process.cpu_times()
        time.sleep(4)
        end = process.cpu_times()
        used = (end.user - start.user) + (end.system - start.system)
        stop.set()
        client.post(f"/api/jobs/{job_id}/stop")
        for thread in tails:
            thread.join(WAIT_S)
    # 20 tails at a fixed 50 ms poll cost ~0.7 s of CPU a second here; backed off, a few %.
    assert used < 0.4 * 4, used


# --- retries -----------------------------------------------------------------------------------

STARTS = re.compile(r"^attempt started at (\S+)$", re.MULTILINE)
WAITS = re.compile(r"^\[runenv\] retrying in (\S+) s$", re.MULTILINE)
FAILING = (
    "python3 -c 'import time; print(\"attempt started at\", time.time()); raise SystemExit(3)'"
)


def submit_config(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``runenv job submit --config CONFIG``, followed to the job's end."""
    return subprocess.run(
        [*RUNENV, "job", "submit", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=WAIT_S,
    )


def test_retries_back_off(environ: dict[str, str]) -> None:
    environ = {**environ, "RUNENV_JOB_RETRY_BACKOFF_S": "0.4"}
    config = Path(environ["RUNENV_HOME"]).parent / "job.yaml"
    config.write_text(f"max_retries: 2\nentrypoint: {json.dumps(FAILING)}\n")
    result = submit_config(config, environ)
    assert result.returncode == 1, result.stderr  # FAILED
    starts = [float(value) for value in STARTS.findall(result.stdout)]
    waits = [float(value) for value in WAITS.findall(result.stdout)]
    assert len(starts) == 3 and len(waits) == 2, result.stdout
    assert 0.3 - 0.05 <= waits[0] <= 0.4 + 0.05 and 0.6 - 0.05 <= waits[1] <= 0.8 + 0.05
    for (earlier, later), waited in zip(itertools.pairwise(starts), waits, strict=True):
        assert later - earlier >= waited - 0.05  # the log says the wait; the starts show it


def test_a_stop_during_the_backoff_ends_the_job_at_once(environ: dict[str, str]) -> None:
    environ = {**environ, "RUNENV_JOB_RETRY_BACKOFF_S": "120"}
    config = Path(environ["RUNENV_HOME"]).parent / "job.yaml"
    config.write_text("max_retries: 1\nentrypoint: exit 1\n")
    job_id = subprocess.run(
        [*RUNENV, "job", "submit", "--no-wait", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
    ).stdout.strip()
    client = JobClient()
    deadline = time.monotonic() + WAIT_S
    while "retrying in" not in client.get_job_logs(job_id):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)
        time.sleep(0.05)
    asked = time.time()
    assert client.stop_job(job_id)
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = client.get_job_info(job_id)
    assert status == JobStatus.STOPPED and info.attempts == 1
    assert (info.end_time or 0) - asked < 5.0  # not the 120 s backoff


def test_the_timeout_ends_a_backoff(environ: dict[str, str]) -> None:
    environ = {**environ, "RUNENV_JOB_RETRY_BACKOFF_S": "120"}
    config = Path(environ["RUNENV_HOME"]).parent / "job.yaml"
    config.write_text("max_retries: 3\ntimeout_s: 1\nentrypoint: exit 1\n")
    started = time.monotonic()
    result = submit_config(config, environ)
    assert result.returncode == 1 and "retrying in" in result.stdout
    assert time.monotonic() - started < 30  # not the 120 s backoff
    [info] = JobClient().list_jobs()
    assert (info.status, info.message, info.attempts) == (
        JobStatus.FAILED,
        "timed out after 1 s",
        1,
    )


@pytest.mark.parametrize(("field", "value"), [("max_retries", -3), ("timeout_s", "abc")])
def test_a_bad_record_fails_the_job_cleanly(
    environ: dict[str, str], field: str, value: object
) -> None:
    from runenv.jobs.manager import JobManager

    manager = JobManager()
    job_id = manager.submit_prepared("true", {}, "", **{field: value})  # type: ignore[arg-type]
    deadline = time.monotonic() + WAIT_S
    while not (info := manager.info(job_id)).status.is_terminal():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info.status == JobStatus.FAILED
    assert info.message.startswith(f"invalid job record: {field}")
    assert "internal error" not in manager.logs(job_id)
