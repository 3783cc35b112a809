"""Building a runtime_env from the flags shared by `runenv run`, `job submit` and friends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runenv.errors import SpecError
from runenv.spec import RuntimeEnv, read_env_file


def env_from_flags(
    runtime_env: Path | None,
    runtime_env_json: str | None,
    working_dir: str | None,
    pip: list[str],
    env_vars: list[str],
) -> RuntimeEnv:
    """The env the flags describe: a file or JSON first, then the single-field flags over it."""
    return RuntimeEnv.from_dict(
        env_dict_from_flags(runtime_env, runtime_env_json, working_dir, pip, env_vars)
    )


def env_dict_from_flags(
    runtime_env: Path | None,
    runtime_env_json: str | None,
    working_dir: str | None,
    pip: list[str],
    env_vars: list[str],
) -> dict[str, Any]:
    """The runtime_env dict the flags describe, before validation."""
    if runtime_env is not None and runtime_env_json is not None:
        raise SpecError(
            "--runtime-env and --runtime-env-json cannot be used together",
            hint="put everything in one of them",
        )
    data: dict[str, Any] = {}
    if runtime_env is not None:
        data = read_env_file(runtime_env)
    elif runtime_env_json is not None:
        data = _parse_json(runtime_env_json)
    if working_dir is not None:
        data["working_dir"] = working_dir
    if pip:
        data["pip"] = list(pip)
    if env_vars:
        given = data.get("env_vars") or {}
        if isinstance(given, dict):  # else left as it is, for validation to name the field
            data["env_vars"] = {**given, **_parse_env_vars(env_vars)}
    return data


def _parse_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"--runtime-env-json is not valid JSON: {error}",
            hint='quote it for the shell, e.g. --runtime-env-json \'{"pip": ["six"]}\'',
        ) from None
    except RecursionError:
        raise SpecError(
            "--runtime-env-json: nested too deeply to read",
            hint="a runtime_env is a few levels deep; check how the JSON was generated",
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"--runtime-env-json: expected a JSON object, got {type(data).__name__}",
            hint='e.g. --runtime-env-json \'{"pip": ["six"]}\'',
        )
    return data


def _parse_env_vars(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise SpecError(f"--env-var {pair!r}: expected NAME=VALUE", hint="e.g. --env-var A=1")
        parsed[name] = value
    return parsed
