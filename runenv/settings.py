"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from runenv.errors import RunenvError

DEFAULT_MAX_PACKAGE_MB = 100
# What one archive may expand to when unpacked (see runenv.packaging.unpack).
DEFAULT_MAX_UNPACK_MB = 1024
DEFAULT_MAX_UNPACK_ENTRIES = 100_000
DEFAULT_MAX_UNPACK_DEPTH = 64
DEFAULT_MAX_COMPRESSION_RATIO = 200
# How a job's supervisor hands its driver the job id and env (runenv.init() makes that env the
# parent of all the job's work, as Ray does).
JOB_ID_VARIABLE = "RUNENV_JOB_ID"
JOB_ENV_VARIABLE = "RUNENV_JOB_RUNTIME_ENV"
JOB_RETRY_BACKOFF_VARIABLE = "RUNENV_JOB_RETRY_BACKOFF_S"
CONDA_CHANNELS_VARIABLE = "RUNENV_CONDA_CHANNELS"


def runenv_home() -> Path:
    """Root of everything runenv keeps on this node (``RUNENV_HOME``)."""
    configured = os.environ.get("RUNENV_HOME")
    if configured:
        home = Path(configured).expanduser().resolve()
        _check_directory_possible(home, "RUNENV_HOME")
        return home
    import platformdirs  # on use: with RUNENV_HOME set, the CLI's start doesn't pay for it

    return Path(platformdirs.user_cache_dir("runenv")).resolve()


def _check_directory_possible(path: Path, name: str) -> None:
    """``path`` is a directory, or could be made one: what exists of it is directories."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunenvError(
            f"{name}={path}: {existing} is not a directory",
            hint=f"set {name} to a directory (or to where one can be made)",
        )


def default_store_uri() -> str:
    """Where packages go when a runtime_env has no ``upload_path``."""
    return (runenv_home() / "store").as_uri()


def max_package_bytes() -> int:
    """The size limit for a local directory, from ``RUNENV_MAX_PACKAGE_MB`` (default 100)."""
    megabytes = _positive_number("RUNENV_MAX_PACKAGE_MB", DEFAULT_MAX_PACKAGE_MB)
    return int(megabytes * 1024 * 1024)


def max_unpack_bytes() -> int:
    """What an archive may expand to, from ``RUNENV_MAX_UNPACK_MB`` (default 1024)."""
    return int(_positive_number("RUNENV_MAX_UNPACK_MB", DEFAULT_MAX_UNPACK_MB) * 1024 * 1024)


def max_unpack_entries() -> int:
    """How many entries an archive may hold (``RUNENV_MAX_UNPACK_ENTRIES``, default 100000)."""
    return int(_positive_number("RUNENV_MAX_UNPACK_ENTRIES", DEFAULT_MAX_UNPACK_ENTRIES))


def max_unpack_depth() -> int:
    """How many directories deep an entry may be (``RUNENV_MAX_UNPACK_DEPTH``, default 64)."""
    return int(_positive_number("RUNENV_MAX_UNPACK_DEPTH", DEFAULT_MAX_UNPACK_DEPTH))


def max_compression_ratio() -> float:
    """How many times its own size an archive may expand to (``RUNENV_MAX_COMPRESSION_RATIO``,
    default 200; archives expanding to under 1 MiB are not judged)."""
    return _positive_number("RUNENV_MAX_COMPRESSION_RATIO", DEFAULT_MAX_COMPRESSION_RATIO)


def ignore_gitignore() -> bool:
    """``RUNENV_IGNORE_GITIGNORE=1`` packages files that .gitignore files leave out."""
    return os.environ.get("RUNENV_IGNORE_GITIGNORE", "").lower() in ("1", "true", "yes")


def failure_ttl_seconds() -> float:
    """How long a failed env build is remembered (``RUNENV_FAILURE_TTL_SECONDS``, default 30)."""
    return _positive_number("RUNENV_FAILURE_TTL_SECONDS", 30.0, allow_zero=True)


def cache_max_bytes() -> int | None:
    """Size cap of the node's env cache (``RUNENV_CACHE_MAX_GB``, default 20; 0: no cap)."""
    gigabytes = _positive_number("RUNENV_CACHE_MAX_GB", 20.0, allow_zero=True)
    return None if gigabytes == 0 else int(gigabytes * 1024**3)


def worker_idle_seconds() -> float:
    """How long an idle task worker is kept for reuse (``RUNENV_WORKER_IDLE_SECONDS``, 60)."""
    return _positive_number("RUNENV_WORKER_IDLE_SECONDS", 60.0)


def max_request_bytes() -> int:
    """The size limit of a JSON request to the job server, from ``RUNENV_MAX_REQUEST_MB``
    (default 4; package uploads have theirs: :func:`max_package_bytes`)."""
    from runenv.jobs.models import JSON_BODY_LIMIT_DEFAULT_MB, JSON_BODY_LIMIT_VARIABLE

    megabytes = _positive_number(JSON_BODY_LIMIT_VARIABLE, JSON_BODY_LIMIT_DEFAULT_MB)
    return int(megabytes * 1024 * 1024)


def job_retry_backoff_seconds() -> float:
    """The wait before a failed job's first retry (``RUNENV_JOB_RETRY_BACKOFF_S``, default 1);
    it doubles with each further attempt, up to the cap of ``runenv.jobs.models``."""
    from runenv.jobs.models import RETRY_BACKOFF_FIRST_SECONDS

    return _positive_number(JOB_RETRY_BACKOFF_VARIABLE, RETRY_BACKOFF_FIRST_SECONDS)


def uv_cache_dir() -> Path:
    """uv's package cache: ``UV_CACHE_DIR`` if set, else beside the env cache (same file
    system, so installs are hard links, not copies)."""
    configured = os.environ.get("UV_CACHE_DIR")
    return Path(configured) if configured else runenv_home() / "uv-cache"


def conda_cache_dir() -> Path:
    """The node's one conda package cache, shared by every conda env (``RUNENV_CONDA_CACHE_DIR``,
    else beside uv's): ``pkgs/`` holds extracted packages, ``repodata/`` channel indexes."""
    configured = os.environ.get("RUNENV_CONDA_CACHE_DIR")
    return Path(configured) if configured else runenv_home() / "conda-cache"


def conda_default_channels() -> tuple[str, ...]:
    """The channels of a conda env that names none: ``RUNENV_CONDA_CHANNELS`` (comma-separated
    names or URLs, e.g. a mirror), else conda-forge."""
    configured = os.environ.get(CONDA_CHANNELS_VARIABLE, "")
    channels = tuple(part.strip() for part in configured.split(",") if part.strip())
    return channels or ("conda-forge",)


def _positive_number(name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value < float("inf"):  # infinite or NaN: not a size or a time
        value = -1.0
    if value < 0 or (value == 0 and not allow_zero):
        raise RunenvError(
            f"{name}={raw!r} is not a valid number", hint=f"unset it or set e.g. {name}={default:g}"
        )
    return value
