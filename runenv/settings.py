"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from runenv.errors import RunenvError

DEFAULT_MAX_PACKAGE_MB = 100


def runenv_home() -> Path:
    """Root of everything runenv keeps on this node (``RUNENV_HOME``)."""
    configured = os.environ.get("RUNENV_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("runenv")).resolve()


def default_store_uri() -> str:
    """Where packages go when a runtime_env has no ``upload_path``."""
    return (runenv_home() / "store").as_uri()


def max_package_bytes() -> int:
    """The size limit for a local directory, from ``RUNENV_MAX_PACKAGE_MB`` (default 100)."""
    raw = os.environ.get("RUNENV_MAX_PACKAGE_MB")
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PACKAGE_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if megabytes <= 0:
        raise RunenvError(
            f"RUNENV_MAX_PACKAGE_MB={raw!r} is not a positive number",
            hint="set it to a size in MiB, e.g. RUNENV_MAX_PACKAGE_MB=250",
        )
    return int(megabytes * 1024 * 1024)


def ignore_gitignore() -> bool:
    """``RUNENV_IGNORE_GITIGNORE=1`` packages files that .gitignore files leave out."""
    return os.environ.get("RUNENV_IGNORE_GITIGNORE", "").lower() in ("1", "true", "yes")
