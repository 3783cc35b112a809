"""Running uv (the binary the ``uv`` PyPI package ships): venvs, installs and locks."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from uv import find_uv_bin

from runenv import process, runs, settings
from runenv.envs.setup import TIMEOUT_HINT
from runenv.errors import EnvSetupError, SetupTimeoutError
from runenv.spec import Lock, PythonPackages

LINK_MODES = ("clone", "copy", "hardlink", "symlink")
# Finding an interpreter takes milliseconds; a probe still this slow is stuck.
PROBE_TIMEOUT_SECONDS = 60.0

# Installer options that also steer resolution (where packages come from, which versions count).
_RESOLUTION_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--no-index",
    "--pre",
    "--prerelease",
    "--index-strategy",
    "-c",
    "--constraint",
    "--override",
    "--only-binary",
    "--no-binary",
    "--keyring-provider",
    "--allow-insecure-host",
}


def env() -> dict[str, str]:
    """The environment uv runs in: runenv's cache, never a Python download, no host venv."""
    environment = dict(os.environ)
    environment.pop("VIRTUAL_ENV", None)  # else uv may act on the host's venv
    environment.setdefault("UV_CACHE_DIR", str(settings.uv_cache_dir()))
    environment["UV_PYTHON_DOWNLOADS"] = "never"
    environment["UV_LINK_MODE"] = link_mode()
    environment["UV_NO_PROGRESS"] = "1"
    return environment


def link_mode() -> str:
    """How installs take files from uv's cache: ``clone`` (copy-on-write) where the filesystem
    can, else ``copy`` — never ``hardlink``, which would let a job that writes to a file of its
    env change every env sharing it, and uv's cache (``RUNENV_LINK_MODE`` overrides)."""
    configured = os.environ.get("RUNENV_LINK_MODE", "").strip().lower()
    if configured:
        if configured not in LINK_MODES:
            raise EnvSetupError(
                f"RUNENV_LINK_MODE={configured!r} is not a link mode",
                hint=f"one of {', '.join(LINK_MODES)}",
            )
        return configured
    return (
        "clone" if _reflinks(str(settings.uv_cache_dir()), str(settings.runenv_home())) else "copy"
    )


@functools.lru_cache(maxsize=4)
def _reflinks(source_dir: str, target_dir: str) -> bool:
    """Whether a file in ``source_dir`` can be cloned into ``target_dir`` (FICLONE; macOS's
    APFS clones too). uv would fall back to hard links where cloning fails: we ask first."""
    if sys.platform == "darwin":
        return True
    if not sys.platform.startswith("linux"):
        return False
    import fcntl
    import tempfile

    try:
        os.makedirs(source_dir, exist_ok=True)
        os.makedirs(target_dir, exist_ok=True)
        with (
            tempfile.NamedTemporaryFile(dir=source_dir) as source,
            tempfile.NamedTemporaryFile(dir=target_dir) as target,
        ):
            source.write(b"runenv")
            source.flush()
            fcntl.ioctl(target.fileno(), runs.FICLONE, source.fileno())
    except OSError:
        return False
    return True


def python_version() -> str:
    return platform.python_version()


def interpreter_for(lock: Lock) -> str:
    """The interpreter an env locked for ``lock.python`` is built with: this one when the
    version matches, else whichever ``pythonX.Y`` uv finds on this node."""
    if lock.python.split(".")[:2] == python_version().split(".")[:2]:
        return sys.executable
    return ".".join(lock.python.split(".")[:2])


def python_available(interpreter: str, timeout: float | None) -> bool:
    """Whether uv finds this interpreter (a path or a version) on this node, within
    ``timeout`` seconds (the setup's, at most ``PROBE_TIMEOUT_SECONDS``)."""
    limit = PROBE_TIMEOUT_SECONDS if timeout is None else min(timeout, PROBE_TIMEOUT_SECONDS)
    try:
        command = [find_uv_bin(), "python", "find", interpreter]
        found = process.run(command, timeout=limit, env=env())
    except subprocess.TimeoutExpired:
        raise SetupTimeoutError(
            f"looking for Python {interpreter} timed out after {limit:g} s",
            hint=TIMEOUT_HINT,
            step="creating the venv",
        ) from None
    return found.returncode == 0


def venv_command(directory: Path, interpreter: str) -> list[str]:
    return [
        find_uv_bin(),
        "venv",
        "--quiet",
        "--relocatable",
        "--python",
        interpreter,
        str(directory),
    ]


def install_command(python: Path, requirements: Path, options: Sequence[str]) -> list[str]:
    """Install a complete lock: no resolution, no dependencies beyond what it pins."""
    return _install(python, ["--no-deps"], requirements, options)


def _install(
    python: Path, flags: Sequence[str], requirements: Path, options: Sequence[str]
) -> list[str]:
    """``uv pip install`` into ``python``'s environment, bytecode compiled (entries are used
    without writing: their bytecode comes with them)."""
    command = [find_uv_bin(), "pip", "install", "--python", str(python), *flags]
    return [*command, "--compile-bytecode", "-r", str(requirements), *options]


def install_wheel_command(wheel: Path, target: Path) -> list[str]:
    return [
        find_uv_bin(),
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--compile-bytecode",
        "--target",
        str(target),
        str(wheel),
    ]


def seed_command(python: Path, tool: str, version: str, options: Sequence[str]) -> list[str]:
    """Install ``tool`` (pip, or uv itself) at ``version`` into the env: ``pip_version`` /
    ``uv_version``, as Ray's fields put that installer in the env."""
    requirement = f"{tool}{version}" if version[:1] in "=<>!~" else f"{tool}=={version}"
    return [find_uv_bin(), "pip", "install", "--python", str(python), requirement, *options]


def check_command(python: Path) -> list[str]:
    return [find_uv_bin(), "pip", "check", "--python", str(python)]


def resolve(packages: PythonPackages, platforms: Sequence[str], timeout: float | None) -> Lock:
    """Pin ``packages`` once for every platform in ``platforms``: a universal resolution
    written as a PEP 751 lock (every file by URL and sha256, markers kept), trimmed to what
    those platforms use and checked to have a file for each of them."""
    from runenv.envs import pylock

    minor = ".".join(python_version().split(".")[:2])  # every patch release installs the lock
    arguments = ["--universal", "--python-version", minor, "--format", "pylock.toml"]
    universal = pylock.parse(_compile(packages, arguments, timeout), "uv's lock")
    trimmed = pylock.for_platforms(universal, platforms, python_version())
    return Lock(python_version(), pylock.pins(trimmed), pylock=trimmed, platforms=tuple(platforms))


def resolve_for_python(packages: PythonPackages, python: str, timeout: float | None) -> Lock:
    """Pin ``packages`` for Python ``python`` (a version) on this platform: a conda env's pip
    sub-list, locked with the env's own one-platform lock."""
    stdout = _compile(packages, ["--python-version", python, "--no-annotate"], timeout)
    pinned = [line.strip() for line in stdout.splitlines()]
    return Lock(python, tuple(line for line in pinned if line and line[0] != "#"))


def _compile(packages: PythonPackages, arguments: Sequence[str], timeout: float | None) -> str:
    """``uv pip compile`` of ``packages`` with ``arguments``: its output."""
    command = [
        find_uv_bin(),
        "pip",
        "compile",
        "-",
        "--python",
        sys.executable,
        "--no-header",
        *arguments,
        *resolution_options(packages.install_options),
    ]
    requirements = ("\n".join(packages.packages) + "\n").encode()
    try:
        result = process.run(command, timeout=timeout, env=env(), input=requirements)
    except subprocess.TimeoutExpired:
        # A SetupTimeoutError: never remembered as a failure, so the next request resolves anew.
        raise SetupTimeoutError(
            f"resolving {packages.tool} packages {list(packages.packages)} timed out after "
            f"{timeout:.3g} s",
            hint=TIMEOUT_HINT,
            step="resolve",
        ) from None
    if result.returncode != 0:
        raise EnvSetupError(
            f"resolving {packages.tool} packages {list(packages.packages)} failed:\n"
            f"{result.stderr.decode(errors='replace').strip()}",
            hint="check the requirement names and versions, and the index options",
            step="resolve",
        )
    return result.stdout.decode()


def pylock_install_command(python: Path, lock_file: Path, options: Sequence[str]) -> list[str]:
    """Install exactly the files a PEP 751 lock names for this node (uv picks them by marker
    and tag, checks their hashes)."""
    flags = ["--preview-features", "pylock"]
    return _install(python, flags, lock_file, install_only_options(options))


def install_only_options(options: Sequence[str]) -> list[str]:
    """The installer options that do not steer resolution: what a lock's install keeps (a
    lock names every file, so index and find-links options would only fail where the index
    cannot be reached)."""
    kept: list[str] = []
    keep = True
    for token in options:
        if token.startswith("-"):
            keep = token.split("=", 1)[0] not in _RESOLUTION_OPTIONS
        if keep:
            kept.append(token)
    return kept


def resolution_options(options: Sequence[str]) -> list[str]:
    """The installer options that matter to resolution, each with its value."""
    kept: list[str] = []
    keep = False
    for token in options:
        if token.startswith("-"):
            keep = token.split("=", 1)[0] in _RESOLUTION_OPTIONS
        if keep:
            kept.append(token)
    return kept
