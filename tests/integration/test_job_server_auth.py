"""The job server's token and TLS, against real `runenv serve` processes on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import os
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runenv.errors import RunenvError
from runenv.jobs import JobClient

RUNENV = [sys.executable, "-m", "runenv"]
WAIT_S = 60
ANNOUNCED = "runenv job server on "


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    address: str
    stderr: str  # what it printed up to its announcement

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()


def serve(environ: dict[str, str], *args: str) -> Served:
    """``runenv serve --port 0 ARGS``, once it has said where it listens (and what else: the
    server prints that in one write)."""
    process = subprocess.Popen(
        [*RUNENV, "serve", "--port", "0", *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT_S
        while ANNOUNCED.encode() not in seen or not seen.endswith(b"\n"):
            assert time.monotonic() < deadline, seen
            if selector.select(timeout=0.5):
                chunk = os.read(process.stderr.fileno(), 65536)
                assert chunk, f"the server exited: {seen.decode()}"
                seen += chunk
    text = seen.decode()
    return Served(process, text.split(ANNOUNCED, 1)[1].split()[0], text)


def runenv(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, timeout=WAIT_S
    )


def clean_environ(home: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNENV_")}
    return {**environ, "RUNENV_HOME": str(home)}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-home")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Served]:
    """One server with the default token, for the module."""
    served = serve(clean_environ(home))
    yield served
    served.stop()


@pytest.fixture
def as_client(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a client on the server's machine: its RUNENV_HOME, no token given."""
    monkeypatch.setenv("RUNENV_HOME", str(home))
    monkeypatch.delenv("RUNENV_TOKEN", raising=False)
    monkeypatch.delenv("RUNENV_ADDRESS", raising=False)
    return home


def test_no_token_or_a_wrong_one_is_401(server: Served, home: Path) -> None:
    jobs = f"{server.address}/api/jobs/"
    assert httpx.get(jobs).status_code == 401
    wrong = httpx.get(jobs, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    token = (home / "auth" / "token").read_text().strip()
    assert httpx.get(jobs, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_websocket_without_the_token_is_refused_before_it_opens(server: Served) -> None:
    host_port = server.address.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    upgrade = (
        f"GET /api/jobs/any/logs/tail HTTP/1.1\r\nHost: {host_port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as connection:
        connection.sendall(upgrade.encode())
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"401"


def test_the_default_token_is_private_and_only_its_place_is_printed(
    server: Served, home: Path
) -> None:
    token_file = home / "auth" / "token"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert f"token: in {token_file}" in server.stderr
    assert token not in server.stderr


def test_the_cli_and_jobclient_pick_up_the_local_token(server: Served, as_client: Path) -> None:
    listed = runenv("job", "list", "--address", server.address, environ=dict(os.environ))
    assert listed.returncode == 0, listed.stderr
    assert JobClient(server.address).list_jobs() == []
    localhost = server.address.replace("127.0.0.1", "localhost")
    assert JobClient(localhost).list_jobs() == []


def test_the_local_token_is_never_sent_elsewhere(server: Served, as_client: Path) -> None:
    client = JobClient("http://192.0.2.1:8265")  # not loopback: no token of ours
    assert "authorization" not in client.backend.client.headers  # type: ignore[attr-defined]
    with pytest.raises(RunenvError, match="missing or wrong token"):
        JobClient(server.address, token="an-explicit-token-wins").list_jobs()


def test_a_token_made_by_servers_starting_at_once_is_one_token(tmp_path: Path) -> None:
    make = "from runenv.jobs.auth import default_token; print(default_token()[0])"
    environ = clean_environ(tmp_path)
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", make], env=environ, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    tokens = {process.communicate(timeout=WAIT_S)[0].strip() for process in starting}
    assert len(tokens) == 1 and tokens == {(tmp_path / "auth" / "token").read_text().strip()}
    assert [path.name for path in (tmp_path / "auth").iterdir()] == ["token"]  # no leftovers


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        ("short-token", 0o600, "shorter than 16 bytes"),
        ("a-token-long-enough-to-pass", 0o644, "chmod 600"),
        ("a-token-long-enough-to-pass", 0o620, "chmod 600"),
    ],
)
def test_a_short_or_open_token_file_is_refused(
    tmp_path: Path, content: str, mode: int, expected: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    token_file.chmod(mode)
    result = runenv(
        "serve", "--port", "0", "--token-file", str(token_file), environ=clean_environ(tmp_path)
    )
    assert result.returncode == 1
    assert str(token_file) in result.stderr and expected in result.stderr
    assert ANNOUNCED not in result.stderr


def test_no_token_is_only_allowed_on_loopback(tmp_path: Path) -> None:
    environ = clean_environ(tmp_path)
    refused = runenv(
        "serve", "--host", "0.0.0.0", "--port", "0", "--unsafe-no-token", environ=environ
    )
    assert refused.returncode == 1
    assert "--unsafe-no-token is only allowed on loopback" in refused.stderr
    served = serve(environ, "--unsafe-no-token")
    try:
        assert "WARNING: no token" in served.stderr
        assert httpx.get(f"{served.address}/api/jobs/").status_code == 200
    finally:
        served.stop()
    assert not (tmp_path / "auth" / "token").exists()


def test_beyond_loopback_without_tls_it_warns(tmp_path: Path) -> None:
    served = serve(clean_environ(tmp_path), "--host", "0.0.0.0")
    try:
        assert "WARNING: listening on 0.0.0.0 over plain HTTP" in served.stderr
    finally:
        served.stop()


def test_a_taken_port_is_reported_before_any_url(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runenv("serve", "--port", str(port), environ=clean_environ(tmp_path))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use by process {os.getpid()}" in result.stderr
    assert "--port" in result.stderr
    assert "http://" not in result.stderr and "token:" not in result.stderr


def test_tls_with_a_self_signed_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    environ = clean_environ(tmp_path / "home")
    served = serve(environ, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert served.address.startswith("https://127.0.0.1:")
        monkeypatch.setenv("RUNENV_HOME", environ["RUNENV_HOME"])
        monkeypatch.delenv("RUNENV_TOKEN", raising=False)
        with pytest.raises(RunenvError, match="CERTIFICATE_VERIFY_FAILED"):
            JobClient(served.address).list_jobs()  # not trusted until told
        monkeypatch.setenv("RUNENV_CA_FILE", str(cert))
        assert JobClient(served.address).list_jobs() == []
        cli = runenv("job", "list", "--address", served.address, environ=dict(os.environ))
        assert cli.returncode == 0, cli.stderr
    finally:
        served.stop()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    environ = clean_environ(tmp_path)
    alone = runenv("serve", "--port", "0", "--tls-cert", str(cert), environ=environ)
    assert alone.returncode == 1 and "--tls-cert and --tls-key go together" in alone.stderr
    wrong = runenv(
        "serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(cert), environ=environ
    )
    assert wrong.returncode == 1 and f"cannot use the TLS certificate {cert}" in wrong.stderr


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (cryptography, else openssl)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither cryptography nor openssl to make a certificate with")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    return cert, key
