"""Recording recipes for the fast path (:mod:`runenv.cli.fast`) after a slow run set an env up.

A recipe must never make a later run use stale code or a wrong env, so it lists every input:

- each file the setup opened for reading (runtime_env and requirements files, ignore files,
  archives) and each directory the packaging walk listed, with each file it packaged;
- each local path the env names, as written (a symlink that is pointed elsewhere shows);
- the environment variables the setup read: every ``RUNENV_*`` setting, ``HOME`` (for ``~``)
  and those ``${VAR}`` in env_vars refers to;
- the cache entries the result uses (they must still be published).

A stat can look unchanged after a change when both happen within the file system's timestamp
granularity ("racily clean", in git's terms). So, as the packaging hash cache does, nothing is
recorded when an input changed less than ``RACY_WINDOW_NS`` before the setup started: a change
after the start would then show as a later ctime. The next run records it instead.
Envs naming an existing conda env are not recorded: finding it depends on more of the node. A
conda env built from a definition is recorded as a pip env is (its lock is a cache entry).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import runenv
from runenv import inputs, uris
from runenv.cache import ENTRY_META
from runenv.cli import fast
from runenv.context import Context
from runenv.envs.env_vars import expand
from runenv.packaging.hashes import RACY_WINDOW_NS
from runenv.spec import RuntimeEnv

# Reads that are not inputs of an env: Python's own files and runenv's (imports), the kernel's.
_SYSTEM_PREFIXES = ("/proc/", "/sys/", "/dev/")


@contextlib.contextmanager
def recording() -> Iterator[inputs.Recording]:
    """Note what the block reads (see :mod:`runenv.inputs`)."""
    try:
        yield inputs.start()
    finally:
        inputs.stop()


def agrees(
    parsed: fast.Parsed,
    command: list[str],
    runtime_env: Path | None,
    runtime_env_json: str | None,
    working_dir: str | None,
    pip: list[str] | None = None,
    env_var: list[str] | None = None,
) -> bool:
    """Whether Click read the command line as the fast path did (else nothing is recorded)."""
    options = parsed.options
    env_file = options.get("--runtime-env")
    return (
        (Path(str(env_file)) if env_file is not None else None) == runtime_env
        and options.get("--runtime-env-json") == runtime_env_json
        and options.get("--working-dir") == working_dir
        and options.get("--pip", []) == (pip or [])
        and options.get("--env-var", []) == (env_var or [])
        and parsed.command == command
    )


def context_record(context: Context) -> dict[str, Any]:
    """What a process needs of a Context, as the fast path reads it back."""
    return {
        "python_executable": context.python_executable,
        "cwd": context.cwd,
        "env_vars": dict(context.env_vars),
        "pythonpath": list(context.pythonpath),
        "path": list(context.path),
        "unset_vars": list(context.unset_vars),
        "fresh_copies": [list(pair) for pair in context.fresh_copies],
    }


def write(
    request: list[object],
    env_file: Path | None,
    data: Mapping[str, Any],
    env: RuntimeEnv,
    result: dict[str, Any],
    recording: inputs.Recording,
    stored: Iterable[str] = (),
) -> None:
    """Record a recipe (best effort: without it, the next run is just not faster).

    ``stored`` are content-addressed files that must still be there (never rewritten in place,
    so a just-written one is trusted at once).
    """
    if isinstance(env.conda, str):
        return
    excluded = _not_inputs()
    opened = {path for path in recording.opened if not _is_excluded(path, excluded)}
    paths = {*recording.paths, *opened, *_named_paths(env_file, data)}
    fingerprints = _fingerprints(paths, recording.started_ns - RACY_WINDOW_NS)
    if fingerprints is None:
        return
    fingerprints += [[path, fast.fingerprint(path)] for path in sorted(set(stored))]
    recipe = {
        "request": request,
        "environ": _environ(env),
        "inputs": fingerprints,
        "entries": _entries(recording.entries),
        "result": result,
        "runenv": runenv.__version__,
    }
    with contextlib.suppress(OSError):
        _write(Path(fast.recipe_path(fast.recipe_key(request))), recipe)


def prepared_record(runtime_env: dict[str, Any], env_key: str) -> dict[str, Any]:
    return {"runtime_env": runtime_env, "env_key": env_key}


def stored_packages(env: RuntimeEnv, prepared: Mapping[str, Any]) -> list[str] | None:
    """The archives in a local store that a prepared env's code went to: a job's supervisor
    fetches them, so they are inputs too. None when it went to a remote store (not checked)."""
    given = {env.working_dir, *env.py_modules}  # URIs given as such are used as they are
    paths = []
    for uri in [prepared.get("working_dir"), *prepared.get("py_modules", [])]:
        if not isinstance(uri, str) or uri in given:
            continue
        if uris.scheme_of(uri) != "file":
            return None
        paths.append(unquote(urlsplit(uri).path))
    return paths


def _named_paths(env_file: Path | None, data: Mapping[str, Any]) -> list[str]:
    """The local paths the request names, as written (relative to the current directory)."""
    named: list[Any] = [str(env_file)] if env_file is not None else []
    named += [data.get("working_dir"), data.get("upload_path"), *(data.get("py_modules") or [])]
    for tool in ("pip", "uv"):
        packages = data.get(tool)
        named.append(packages.get("packages") if isinstance(packages, dict) else packages)
    cwd = os.getcwd()
    return [
        os.path.join(cwd, os.path.expanduser(value))
        for value in named
        if isinstance(value, str) and value and not uris.scheme_of(value)
    ]


def _fingerprints(paths: set[str], trusted_before_ns: int) -> list[list[Any]] | None:
    """Each input's fingerprint; None when one changed too recently to be trusted."""
    recorded: list[list[Any]] = []
    for path in sorted(paths):
        found = fast.fingerprint(path)
        if found is not None and max(found[2], found[3]) >= trusted_before_ns:
            return None
        recorded.append([path, found])
    return recorded


def _is_excluded(path: str, excluded: tuple[str, ...]) -> bool:
    return path.startswith(excluded) or "/__pycache__/" in path


def _not_inputs() -> tuple[str, ...]:
    home = fast.runenv_home()
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    package = os.path.dirname(runenv.__file__ or "")
    return (*_SYSTEM_PREFIXES, *(os.path.join(p, "") for p in (*python, home, package)))


def _environ(env: RuntimeEnv) -> dict[str, str | None]:
    names = {name for name in os.environ if name.startswith("RUNENV_")} | {"HOME"}
    referenced = _Referenced()
    for value in env.env_vars.values():
        expand(value, referenced)
    names |= referenced.names
    return {name: os.environ.get(name) for name in sorted(names)}


class _Referenced(dict[str, str]):
    """A mapping that notes which names env_vars' ``${VAR}`` expansion looks up."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.names.add(name)
        return default


def _entries(directories: list[str]) -> list[list[str]]:
    """Each entry's lease file, published marker, directory and manifest (runenv.cache's
    layout)."""
    unique = dict.fromkeys(directories)
    return [
        [f"{entry}.lease", os.path.join(entry, ENTRY_META), entry, f"{entry}.manifest"]
        for entry in unique
    ]


def _write(path: Path, recipe: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    staging.write_bytes(marshal.dumps(recipe))
    os.replace(staging, path)
