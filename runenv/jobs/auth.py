"""The job server's token: read from a file the owner gave, or made once under ``RUNENV_HOME``.

``runenv serve`` always has a token unless told otherwise (``--unsafe-no-token``, loopback only).
Without ``--token-file`` it makes one the first time (``RUNENV_HOME/auth/token``, 0600 in a 0700
directory) and reuses it; a client on this machine calling a loopback address picks it up by
itself (:func:`local_token`), so the local workflow needs no configuration. The token is never
sent to another machine's server: for those it is given explicitly (``RUNENV_TOKEN``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit

from runenv import settings
from runenv.errors import RunenvError
from runenv.jobs.store import private_directory

MIN_TOKEN_BYTES = 16
# Set by `runenv serve` in its own environment: its supervisors hide that file from jobs.
TOKEN_FILE_VARIABLE = "RUNENV_SERVER_TOKEN_FILE"


def auth_home() -> Path:
    return settings.runenv_home() / "auth"


def default_token_file() -> Path:
    return auth_home() / "token"


def read_token(path: Path) -> str:
    """The token in ``path``, refused when others may read or change it, or when it is short."""
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as error:
        raise RunenvError(f"cannot read the token file {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RunenvError(
            f"the token file {path} is open to other users (mode {stat.filemode(mode)})",
            hint=f"chmod 600 {path}",
        )
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise RunenvError(
            f"the token in {path} is shorter than {MIN_TOKEN_BYTES} bytes",
            hint="write a long random secret: python -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))' > {path}",
        )
    return token


def default_token() -> tuple[str, Path]:
    """The server's own token, made the first time: the same file whoever starts first.

    Written whole to a private temporary file, then linked into place: a server starting at the
    same moment either links first or reads the winner's file, never a half-written one.
    """
    path = default_token_file()
    private_directory(path.parent)
    if not path.exists():
        scratch = path.with_name(f".token.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            with contextlib.suppress(FileExistsError):  # another server made it first
                os.link(scratch, path)
        finally:
            scratch.unlink()
    return read_token(path), path


def local_token(address: str) -> str | None:
    """The default token of this machine's server, for a loopback ``address`` (else None)."""
    if not is_loopback(urlsplit(address).hostname or ""):
        return None
    try:
        return default_token_file().read_text().strip() or None
    except OSError:
        return None  # no local server has made one, or not ours to read


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
