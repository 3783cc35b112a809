"""The job config file (Anyscale-style YAML): what to run, in what env, how often to retry."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runenv.errors import SpecError
from runenv.jobs.models import MAX_RETRIES_LIMIT
from runenv.spec import read_env_file

# Fields that are shorthands for runtime_env fields.
_ENV_SHORTHANDS = ("working_dir", "excludes", "env_vars", "py_modules", "upload_path")
_FIELDS = (
    "name",
    "entrypoint",
    "requirements",
    "runtime_env",
    "max_retries",
    "timeout_s",
    "metadata",
    *_ENV_SHORTHANDS,
)


@dataclass
class JobConfig:
    name: str | None = None
    entrypoint: str | None = None
    runtime_env: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 0
    timeout_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def read_job_config(path: Path) -> JobConfig:
    """Read a job config; its runtime_env shorthands are folded into ``runtime_env``."""
    data = read_env_file(path)
    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1, cutoff=0.6)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"{path}: unknown job config field {key!r}{suggestion}",
                hint=f"job config fields: {', '.join(sorted(_FIELDS))}",
            )
    env = dict(_mapping(data, "runtime_env", path))
    for key in _ENV_SHORTHANDS:
        if key in data:
            env[key] = (
                {**_mapping(env, "env_vars", path), **_mapping(data, key, path)}
                if key == "env_vars"
                else data[key]
            )
    if "requirements" in data:
        env["pip"] = data["requirements"]  # a list or the path of a requirements.txt
    return JobConfig(
        name=_optional(data, "name", str, path),
        entrypoint=_optional(data, "entrypoint", str, path),
        runtime_env=env,
        max_retries=_max_retries(data, path),
        timeout_s=_timeout(data, path),
        metadata={str(k): str(v) for k, v in _mapping(data, "metadata", path).items()},
    )


def _max_retries(data: dict[str, Any], path: Path) -> int:
    """The same range as a job server's (see runenv.jobs.requests)."""
    retries: int = _optional(data, "max_retries", int, path) or 0
    if not 0 <= retries <= MAX_RETRIES_LIMIT:
        raise SpecError(
            f"{path}: max_retries: {retries} is out of range",
            hint=f"an integer from 0 to {MAX_RETRIES_LIMIT}",
        )
    return retries


def _timeout(data: dict[str, Any], path: Path) -> float | None:
    seconds: float | None = _optional(data, "timeout_s", (int, float), path)
    if seconds is not None and seconds <= 0:
        raise SpecError(
            f"{path}: timeout_s: {seconds} is not above 0",
            hint="a number of seconds above 0, or leave it out for no limit",
        )
    return seconds


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: {key}: expected a mapping, got {type(value).__name__}")
    return value


def _optional(data: dict[str, Any], key: str, kind: Any, path: Path) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise SpecError(
            f"{path}: {key}: expected {getattr(kind, '__name__', 'a number')}, "
            f"got {type(value).__name__}"
        )
    return value
