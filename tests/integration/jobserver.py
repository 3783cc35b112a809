"""A real ``runenv serve`` on 127.0.0.1 for tests of its HTTP API; one can serve a whole module."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_S = 60


@dataclass
class JobServer:
    address: str
    token: str
    token_file: Path
    home: Path  # the server's RUNENV_HOME
    process: subprocess.Popen[bytes]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def running_job_server(root: Path) -> Iterator[JobServer]:
    """A server with its own RUNENV_HOME under ``root`` and a random token (file 0600)."""
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = root / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = _free_port()
    environ = {**os.environ, "RUNENV_HOME": str(root / "server-home")}
    for name in ("RUNENV_ADDRESS", "RUNENV_TOKEN"):
        environ.pop(name, None)
    command = [sys.executable, "-m", "runenv", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--token-file", str(token_file)], env=environ, stderr=subprocess.DEVNULL
    )
    server = JobServer(f"http://127.0.0.1:{port}", token, token_file, root / "server-home", process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(server: JobServer) -> None:
    deadline = time.monotonic() + START_S
    while True:
        try:
            url = f"{server.address}/api/version"
            httpx.get(url, headers=server.auth, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            assert server.process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
