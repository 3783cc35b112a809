"""Shared fixtures: real storage servers (moto S3, a GCS emulator, plain http) on 127.0.0.1.

Servers start once per session, on free ports, and are stopped at its end. Buckets are made
fresh for each test, and the environment variables pointing clients at a server are set with
monkeypatch so they vanish after the test.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from conda_channel import CondaChannel, build_standard_channel
from wheels import build_wheel

STARTUP_DEADLINE_S = 30.0
POLL_INTERVAL_S = 0.05
BIN_DIR = Path(sys.executable).parent

# werkzeug's request log: 127.0.0.1 - - [date] "PUT /bucket/key HTTP/1.1" 200 -
_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours non-2xx lines, even in files


def _unseal_caches(root: Path) -> None:
    """Running as root, tests leave sealed (immutable) cache entries in their temp dirs, which
    pytest could not delete: unseal them, as `runenv env gc` does for entries it removes."""
    from runenv import integrity

    if os.geteuid() != 0 or not root.is_dir():
        return
    for directory, subdirectories, _ in os.walk(root):
        if os.path.basename(directory) != "runtime_resources":
            continue
        for bucket in subdirectories:
            for entry in Path(directory, bucket).iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    integrity.unseal(entry)
        subdirectories[:] = []


def can_seal(scratch: Path) -> bool:
    """Whether cache entries get sealed here: root, with the kernel allowing the flag."""
    from runenv import integrity

    probe = scratch / "seal-probe"
    probe.mkdir()
    (probe / "file").write_text("x")
    manifest = scratch / "seal-probe.manifest"
    integrity.record(probe, manifest, read_only=True)
    sealed = os.geteuid() == 0 and integrity.seal(probe, manifest)
    integrity.unseal(probe)
    return sealed


def sealed(entry_child: Path) -> bool:
    """Whether the entry holding ``entry_child`` was sealed (root, where the kernel allows)."""
    for parent in entry_child.parents:
        manifest = parent.with_name(parent.name + ".manifest")
        if manifest.is_file():
            return "sealed" in manifest.read_text().split("\n", 1)[0]
    raise AssertionError(f"no entry holds {entry_child}")


def make_changeable(entry_child: Path) -> None:
    """What changing an entry takes on purpose: unsealing it (root) and adding write bits."""
    from runenv import integrity

    for parent in entry_child.parents:
        if parent.with_name(parent.name + ".manifest").is_file():
            integrity.unseal(parent)
            break
    for path in (entry_child, *entry_child.parents):
        if path.exists():
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)
        if path.name == "runtime_resources":
            break


def pytest_sessionstart(session: pytest.Session) -> None:
    basetemp = session.config.option.basetemp
    if basetemp:  # pytest empties it first: a session cut short may have left sealed entries
        _unseal_caches(Path(basetemp))


def pytest_sessionfinish(session: pytest.Session) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and factory._basetemp is not None:
        _unseal_caches(factory._basetemp)


# A Python child that says "ready", then waits, and exits 42 on SIGTERM: signal forwarding.
SIGTERM_EXITS_42 = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    ready: Callable[[], bool], what: str, deadline_s: float = STARTUP_DEADLINE_S
) -> None:
    """Poll ``ready`` until it holds, or fail the test after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {deadline_s:.0f}s")
        time.sleep(POLL_INTERVAL_S)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class ServerProcess:
    """A server subprocess with its output in a log file; stopped by :meth:`stop`."""

    def __init__(self, command: list[str], log_path: Path, health_url: str) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until(lambda: self._healthy(health_url), f"{command[0]} (log: {log_path})")

    def _healthy(self, url: str) -> bool:
        if self._process.poll() is not None:
            log = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"server exited with {self._process.returncode}:\n{log}")
        return http_ok(url)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)


@dataclass
class MotoS3:
    """A running ``moto_server``: where it listens and what it was asked."""

    endpoint_url: str
    log_path: Path

    def requests(self) -> list[tuple[str, str, int]]:
        """Every request logged so far as (method, path, status), once the log has caught up.

        werkzeug logs a request before answering it, through a logging handler that flushes
        each line; a marker request, awaited in the log, makes sure nothing is still pending.
        """
        marker = f"/moto-api/?log-marker={uuid.uuid4().hex}"
        http_ok(self.endpoint_url + marker)
        wait_until(lambda: marker in self._log_text(), "moto request log", deadline_s=5)
        found = []
        for line in self._log_text().splitlines():
            match = _REQUEST_LINE.search(line)
            if match and "log-marker=" not in match["path"]:
                found.append((match["method"], match["path"], int(match["status"])))
        return found

    def count_requests(self, method: str, path_prefix: str) -> int:
        """How many ``method`` requests went to paths starting with ``path_prefix``."""
        return sum(
            1
            for seen, path, _ in self.requests()
            if seen == method and path.startswith(path_prefix)
        )

    def _log_text(self) -> str:
        return _ANSI_STYLE.sub("", self.log_path.read_text(errors="replace"))


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server for the whole session."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    command = [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = ServerProcess(command, log_path, f"{endpoint}/moto-api/")
    try:
        yield MotoS3(endpoint, log_path)
    finally:
        server.stop()


@pytest.fixture
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No AWS settings from the developer's machine: empty config files, no AWS_* variables.

    Returns the directory that is HOME and holds the (empty) ``config`` and ``credentials``.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    aws_dir = tmp_path_factory.mktemp("aws-home")
    (aws_dir / "config").touch()
    (aws_dir / "credentials").touch()
    monkeypatch.setenv("HOME", str(aws_dir))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probing
    return aws_dir


@pytest.fixture
def s3_bucket(moto_s3: MotoS3, isolated_aws: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on ``moto_s3``; AWS_* variables point clients at it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint_url)
    bucket = f"runenv-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gcp-storage-emulator for the whole session; yields its URL (http://127.0.0.1:PORT)."""
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gcs") / "gcs_emulator.log"
    command = [
        str(BIN_DIR / "gcp-storage-emulator"),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
    ]
    server = ServerProcess(command, log_path, f"{host}/")
    try:
        yield host
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on ``gcs_emulator``; STORAGE_EMULATOR_HOST points clients at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    bucket = f"runenv-test-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(
        f"{gcs_emulator}/storage/v1/b?project=runenv-test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200, response.read()
    return bucket


@dataclass
class HttpServer:
    """A static file server: files written under ``directory`` appear under ``base_url``."""

    base_url: str
    directory: Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """A threaded http.server serving a temporary directory for the whole session."""
    directory = tmp_path_factory.mktemp("http-root")
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    (directory / "healthz").write_text("ok")
    wait_until(lambda: http_ok(f"{base_url}/healthz"), "http server")
    try:
        yield HttpServer(base_url, directory)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- a package index whose wheel downloads wait for the test ------------------------------

GATE_WAIT_S = 60


@dataclass
class GatedIndex:
    """A find-links server whose wheel downloads wait until the test opens the gate."""

    url: str
    requested: threading.Event
    gate: threading.Event

    def locked_pip(self) -> dict[str, Any]:
        """A pip field already locked, so the first download is the install's (not the
        resolution's): the install is what waits at the gate."""
        python = ".".join(map(str, sys.version_info[:3]))
        return {
            "packages": ["runenv-slow"],
            "pip_install_options": ["--no-index", "--find-links", self.url],
            "lock": {"python": python, "requirements": ["runenv-slow==1.0"]},
        }


def processes_under(home: Path, what: str) -> list[str]:
    """Command lines of running processes that mention ``home`` and ``what`` (" pip install ")."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in command and what in command:
            found.append(command)
    return found


@contextmanager
def gated_server(directory: Path, suffix: str) -> Iterator[GatedIndex]:
    """``directory`` over HTTP on 127.0.0.1; a GET of a name ending in ``suffix`` says so
    (``requested``) and waits until the test opens ``gate`` (at most GATE_WAIT_S)."""
    requested, gate = threading.Event(), threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(suffix):
                requested.set()
                gate.wait(GATE_WAIT_S)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(directory))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GatedIndex(f"http://127.0.0.1:{server.server_address[1]}/", requested, gate)
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def gated_index(tmp_path: Path) -> Iterator[GatedIndex]:
    directory = tmp_path / "index"
    build_wheel(directory, "runenv-slow", "1.0")
    with gated_server(directory, ".whl") as served:
        yield served


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory: pytest.TempPathFactory) -> CondaChannel:
    """The standard local conda channel (tests/conda_channel.py), built once per session.

    Shared: a test that adds packages works on ``conda_channel.copy_to(tmp_path / "channel")``.
    """
    return build_standard_channel(tmp_path_factory.mktemp("conda-channel"))
