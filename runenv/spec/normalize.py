"""From a runtime_env dict as users write it to its canonical form.

The canonical form is a plain JSON-able dict in Ray's shape: only the fields that are set, local
paths made absolute, requirements files read into lists, ``pip``/``uv`` in their mapping form.
Normalizing a canonical dict again gives the same dict.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runenv import uris
from runenv.errors import SpecError
from runenv.spec.errors import field_path, from_validation_error, spec_error
from runenv.spec.files import one_line, read_utf8
from runenv.spec.python_packages import Lock, PythonPackages, Tool, install_options_key
from runenv.spec.requirements import (
    REQUIREMENT_HINT,
    canonical_requirement,
    dedupe,
    invalid_requirement,
    read_requirements_file,
)
from runenv.spec.schema import ConfigInput, PipInput, RuntimeEnvInput, UvInput

PYTHON_ENV_FIELDS = ("pip", "uv", "conda")
LOCK_FILE_NAME = "pylock.toml"
_CONDA_FILE_SUFFIXES = (".yml", ".yaml")
# How deep mappings and lists may nest (an inline conda env needs a handful of levels): deeper
# input would exhaust Python's recursion limit in validation, copying or JSON.
MAX_NESTING = 100
# How many values (strings, numbers, mappings, lists) it may hold in all.
MAX_VALUES = 100_000
# Linux's MAX_ARG_STRLEN: one NAME=VALUE string of a process's environment, with its NUL.
MAX_ENV_VAR_BYTES = 128 * 1024
# All env_vars together: half of the usual ARG_MAX (2 MiB), which the node's own environment
# and the command line share.
MAX_ENV_VARS_TOTAL_BYTES = 1024 * 1024
MAX_SETUP_TIMEOUT_SECONDS = 7 * 24 * 3600


def normalize(raw: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """Validate ``raw`` and return its canonical dict; relative paths start at ``base_dir``."""
    if not isinstance(raw, Mapping):
        raise spec_error([f"runtime_env: expected a mapping, got {type(raw).__name__}"])
    _check_values(raw)
    try:
        parsed = RuntimeEnvInput.model_validate(_plain(dict(raw)))
    except ValidationError as error:
        raise from_validation_error(error) from None
    _check_one_python_env(parsed)
    canonical: dict[str, Any] = {}
    if parsed.working_dir is not None:
        canonical["working_dir"] = _working_dir(parsed.working_dir, base_dir)
    if parsed.py_modules is not None:
        canonical["py_modules"] = _py_modules(parsed.py_modules, base_dir)
    if parsed.excludes is not None:
        canonical["excludes"] = dedupe(parsed.excludes)
    if parsed.pip is None and parsed.uv is None and parsed.conda is None:
        checked_in = _checked_in_lock(canonical.get("working_dir"))
        if checked_in is not None:
            canonical["uv"] = _python_packages("uv", str(checked_in), base_dir)
    if parsed.pip is not None:
        canonical["pip"] = _python_packages("pip", parsed.pip, base_dir)
    if parsed.uv is not None:
        canonical["uv"] = _python_packages("uv", parsed.uv, base_dir)
    if parsed.conda is not None:
        canonical["conda"] = _conda(parsed.conda, base_dir)
    if parsed.env_vars is not None:
        canonical["env_vars"] = _env_vars(parsed.env_vars)
    if parsed.config is not None:
        canonical["config"] = _config(parsed.config)
    if parsed.upload_path is not None:
        canonical["upload_path"] = _upload_path(parsed.upload_path, base_dir)
    return canonical


def _check_values(raw: Mapping[str, Any]) -> None:
    """Refuse what no later step could use: nesting deeper than :data:`MAX_NESTING`, more
    than :data:`MAX_VALUES` values, and strings (keys too) holding a NUL or a lone surrogate,
    which paths, processes and environments cannot carry. Iterative, so that no input can
    exhaust the recursion limit."""
    pending: list[tuple[list[str | int], Any]] = [([], raw)]
    visited = 0
    while pending:
        location, value = pending.pop()
        visited += 1
        if visited > MAX_VALUES:  # e.g. YAML aliases that expand exponentially
            raise SpecError(
                f"runtime_env: holds more than {MAX_VALUES} values",
                hint="a runtime_env holds a few fields; check how it was generated",
            )
        if isinstance(value, str):
            _check_string(field_path(location), "", value)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(
                f"{field_path(location)}: {value} is not a number JSON can hold",
                hint="use a finite number, or a string",
            )
        if isinstance(value, Mapping):
            items: list[tuple[str | int, Any]] = []
            for key, item in value.items():
                if isinstance(key, str):
                    _check_string(field_path(location), f"key {key!r} ", key)
                items.append((key if isinstance(key, (str, int)) else repr(key), item))
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        else:
            continue
        if len(location) >= MAX_NESTING:
            raise SpecError(
                f"{field_path(location[:4])}…: nested deeper than {MAX_NESTING} levels",
                hint="a runtime_env is a few levels deep; check how the value was generated",
            )
        pending.extend(([*location, key], item) for key, item in items)


def _check_string(where: str, what: str, text: str) -> None:
    if "\0" in text:
        problem = "contains a NUL character"
    else:
        try:
            text.encode("utf-8")
            return
        except UnicodeEncodeError:
            problem = "is not valid UTF-8 text (undecodable bytes or a lone surrogate)"
    raise SpecError(
        f"{where}: {what}{problem}",
        hint="use UTF-8 text without NUL characters: no path, variable or command line can hold "
        "a NUL, and a runtime_env is JSON, which holds only UTF-8",
    )


def _plain(value: Any) -> Any:
    """Accept what Python callers naturally pass: tuples, Paths and (in py_modules) modules."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, types.ModuleType):
        return _module_location(value)
    return value


def _module_location(module: types.ModuleType) -> str:
    """A package's directory, or a single-file module's .py file (as Ray's py_modules accepts)."""
    if getattr(module, "__path__", None):
        return str(Path(next(iter(module.__path__))).resolve())
    if getattr(module, "__file__", None):
        return str(Path(str(module.__file__)).resolve())
    raise spec_error([f"runtime_env.py_modules: module {module.__name__!r} has no file"])


def _check_one_python_env(parsed: RuntimeEnvInput) -> None:
    chosen = [name for name in PYTHON_ENV_FIELDS if getattr(parsed, name) is not None]
    if len(chosen) > 1:
        raise SpecError(
            f"runtime_env: {' and '.join(chosen)} are both set; use at most one of pip, uv, conda",
            hint="list pip packages under the conda env's `dependencies: [pip: [...]]`, "
            "or keep only one of the fields",
        )


def _local_path(value: str, base_dir: Path) -> Path:
    return (base_dir / Path(value).expanduser()).resolve()


def _working_dir(value: str, base_dir: Path) -> str:
    where = field_path(["working_dir"])
    if uris.scheme_of(value):
        _check_remote(value, where, allowed=uris.ARCHIVE_SUFFIXES)
        return value
    path = _local_path(value, base_dir)
    with _looking_at(where):
        if path.is_dir() or (path.is_file() and path.suffix == ".zip"):
            return str(path)
        if path.exists():
            raise spec_error([f"{where}: {path} is neither a directory nor a .zip file"])
    raise SpecError(
        f"{where}: directory not found: {path}",
        hint="relative paths are resolved against the current directory",
    )


@contextmanager
def _looking_at(where: str) -> Iterator[None]:
    """A path the system refuses to look at (too long, no permission, a loop of links) is an
    error of the field that named it."""
    try:
        yield
    except OSError as error:
        name = str(error.filename or "the path")
        shown = name if len(name) <= 200 else f"{name[:120]}…{name[-60:]}"
        raise SpecError(
            f"{where}: cannot use {shown}: {error.strerror}",
            hint="check the path (a name is at most 255 bytes, a whole path 4096)",
        ) from None


def _py_modules(values: list[str], base_dir: Path) -> list[str]:
    modules = []
    for index, value in enumerate(values):
        where = field_path(["py_modules", index])
        if uris.scheme_of(value):
            _check_remote(value, where, allowed=(*uris.ARCHIVE_SUFFIXES, uris.WHEEL_SUFFIX))
            modules.append(value)
            continue
        path = _local_path(value, base_dir)
        with _looking_at(where):
            found, is_dir = path.exists(), path.is_dir()
        if not found:
            raise SpecError(
                f"{where}: not found: {path}",
                hint="relative paths are resolved against the current directory",
            )
        if not (is_dir or path.suffix in (".py", uris.WHEEL_SUFFIX)):
            raise spec_error(
                [f"{where}: {path} is not a package directory, a .py file or a .whl file"]
            )
        modules.append(str(path))
    return dedupe(modules)


def _check_remote(uri: str, where: str, allowed: tuple[str, ...]) -> None:
    scheme = uris.scheme_of(uri)
    if scheme not in uris.DOWNLOAD_SCHEMES:
        raise SpecError(
            f"{where}: unsupported URI scheme {scheme!r} in {uri}",
            hint=f"use one of: {', '.join(sorted(uris.DOWNLOAD_SCHEMES))}",
        )
    _check_file_host(uri, where)
    try:
        suffix = uris.archive_suffix(uri)
    except ValueError as error:  # e.g. an unclosed [ of an IPv6 host
        message = f"{where}: not a valid URI: {uri} ({error})"
        raise SpecError(message, hint="check the URI") from None
    if suffix not in allowed:
        raise SpecError(
            f"{where}: {uri} does not name an archive ({', '.join(allowed)})",
            hint="remote code must be an archive; package a directory with `runenv package DIR`",
        )


def _check_file_host(uri: str, where: str) -> None:
    """A file:// URI names a file on this machine: another host's would be read from here."""
    if uris.scheme_of(uri) != "file":
        return
    host = uri.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2].lower()
    if host not in ("", "localhost"):
        raise SpecError(
            f"{where}: {uri} names a file on host {host!r}; file:// URIs are read locally",
            hint="write file:///absolute/path (three slashes), or use s3://, gs:// or https:// "
            "for a file on another machine",
        )


def _checked_in_lock(working_dir: str | None) -> Path | None:
    """A ``pylock.toml`` at the top of a local working_dir: the env's packages, as uv uses a
    project's uv.lock (only when the env has no pip, uv or conda field)."""
    if working_dir is None or uris.scheme_of(working_dir):
        return None
    candidate = Path(working_dir) / LOCK_FILE_NAME
    return candidate if candidate.is_file() else None


def _is_lock_file(value: Any) -> bool:
    """Whether a requirements path names a PEP 751 lock: ``pylock.toml``, ``pylock.<x>.toml``."""
    if not isinstance(value, str):
        return False
    name = Path(value).name
    return name == LOCK_FILE_NAME or (name.startswith("pylock.") and name.endswith(".toml"))


def _lock_file(tool: Tool, value: str, base_dir: Path, where: str) -> dict[str, Any]:
    """The ``pip``/``uv`` field for a lock file, used as it is (no resolution, no filtering)."""
    import platform

    from runenv.envs import pylock
    from runenv.errors import RunenvError

    path = _local_path(value, base_dir)
    with _looking_at(where):
        if not path.is_file():
            raise SpecError(f"{where}: lock file not found: {path}", hint="check the path")
        try:
            data = pylock.parse(read_utf8(path, where), str(path))
        except RunenvError as error:
            raise SpecError(f"{where}: {error.message}", hint=error.hint) from None
    pinned = pylock.pins(data)
    names = dedupe(
        [canonical_requirement(pin.split("==")[0].split(";")[0].strip()) for pin in pinned]
    )
    lock = Lock(platform.python_version(), pinned, pylock=data)
    return PythonPackages(tool, tuple(names), lock=lock).to_field()


def _python_packages(tool: Tool, value: Any, base_dir: Path) -> dict[str, Any]:
    where = field_path([tool])
    if _is_lock_file(value):
        return _lock_file(tool, value, base_dir, where)
    if isinstance(value, (PipInput, UvInput)) and _is_lock_file(value.packages):
        return _lock_file(tool, str(value.packages), base_dir, f"{where}.packages")
    if not isinstance(value, (PipInput, UvInput)):
        packages, options = _requirements(value, base_dir, where)
        return PythonPackages(tool, tuple(packages), install_options=tuple(options)).to_field()
    packages, file_options = _requirements(value.packages, base_dir, f"{where}.packages")
    data = value.model_dump()
    lock = _checked_lock(data["lock"], where) if data["lock"] is not None else None
    return PythonPackages(
        tool,
        tuple(packages),
        check=data[f"{tool}_check"],
        version=data[f"{tool}_version"],
        install_options=tuple(file_options + data[install_options_key(tool)]),
        lock=lock,
    ).to_field()


def _checked_lock(data: dict[str, Any], where: str) -> Lock:
    """A lock given in the env (made by another runenv): exact pins, or nothing is installed."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    try:
        Version(data["python"])
    except InvalidVersion:
        raise SpecError(
            f"{where}.lock.python: {data['python']!r} is not a Python version",
            hint="write it as runenv locks do, e.g. 3.11.7 (or leave the lock out)",
        ) from None
    for index, text in enumerate(data["requirements"]):
        if text.startswith(("-e ", "--editable ")):
            continue  # a local project, pinned by its path
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            problem = f"invalid requirement {text!r}: {reason}"
        else:
            exact = [s for s in requirement.specifier if s.operator in ("==", "===")]
            pinned = requirement.url is not None or (
                len(exact) == 1 and "*" not in exact[0].version
            )
            if pinned:
                continue
            problem = f"{text!r} is not pinned to one version"
        raise SpecError(
            f"{where}.lock.requirements[{index}]: {problem}",
            hint="a lock pins every package exactly (name==version); leave `lock` out to let "
            "runenv resolve the packages",
        )
    return Lock.from_field(data)


def _requirements(
    value: list[str] | str, base_dir: Path, where: str
) -> tuple[list[str], list[str]]:
    if isinstance(value, str):
        with _looking_at(where):
            read = read_requirements_file(_local_path(value, base_dir), where)
        return read.packages, read.options
    packages, problems = [], []
    for index, requirement in enumerate(value):
        text = requirement.strip()
        if not text:
            raise spec_error([f"{where}[{index}]: expected a non-empty requirement string"])
        try:
            packages.append(canonical_requirement(text))
        except ValueError as error:
            problems.append(invalid_requirement(f"{where}[{index}]", text, str(error)))
    if problems:
        raise spec_error(problems, hint=REQUIREMENT_HINT)
    return dedupe(packages), []


def _conda(value: str | dict[str, Any], base_dir: Path) -> str | dict[str, Any]:
    where = field_path(["conda"])
    if isinstance(value, dict):
        return _conda_definition(_json_mapping(value, where), where)
    if value.endswith(_CONDA_FILE_SUFFIXES):
        with _looking_at(where):
            path = _local_path(value, base_dir)
            return _conda_definition(_json_mapping(_read_conda_file(path, where), where), where)
    if "/" in value:
        return str(_local_path(value, base_dir))  # the prefix of an existing env
    return value  # the name of an existing env


def _conda_definition(value: dict[str, Any], where: str) -> dict[str, Any]:
    from runenv.conda.spec import normalize_conda  # on use: it loads rattler's spec parser

    return normalize_conda(value, where)


def _read_conda_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise SpecError(
            f"{where}: environment file not found: {path}",
            hint="relative paths are resolved against the current directory",
        )
    import yaml  # on use: only environment.yml files need it

    text = read_utf8(path, where)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(
            f"{where}: {path} is not valid YAML: {one_line(error)}",
            hint="check the syntax near that line",
        ) from None
    except RecursionError:
        raise SpecError(
            f"{where}: {path} is nested too deeply to read",
            hint="an environment file is a few levels deep; check how it was generated",
        ) from None


def _json_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise spec_error([f"{where}: expected a mapping, got {type(value).__name__}"])
    try:
        return dict(json.loads(json.dumps(value)))
    except (TypeError, ValueError) as error:
        raise spec_error([f"{where}: not JSON-serializable: {error}"]) from None


def _env_vars(value: dict[str, str]) -> dict[str, str]:
    total = 0
    for name, text in value.items():
        if not name or "=" in name or "\0" in name:
            raise spec_error([f"{field_path(['env_vars'])}: invalid variable name {name!r}"])
        size = len(name.encode()) + len(text.encode()) + 2  # NAME=VALUE and its NUL
        if size > MAX_ENV_VAR_BYTES:
            raise SpecError(
                f"{field_path(['env_vars', name])}: {size} bytes as NAME=VALUE, over the "
                f"limit of {MAX_ENV_VAR_BYTES} (128 KiB, Linux's MAX_ARG_STRLEN)",
                hint="pass large data in a file (in working_dir) and its path in the variable",
            )
        total += size
    if total > MAX_ENV_VARS_TOTAL_BYTES:
        raise SpecError(
            f"{field_path(['env_vars'])}: {total} bytes in all, over the limit of "
            f"{MAX_ENV_VARS_TOTAL_BYTES} (1 MiB; a process's whole environment and command "
            "line share ARG_MAX, usually 2 MiB)",
            hint="pass large data in a file (in working_dir) and its path in a variable",
        )
    return dict(value)


def _config(value: ConfigInput) -> dict[str, Any]:
    data = value.model_dump(include=value.model_fields_set)
    if data.get("platforms") is not None:
        data["platforms"] = _platforms(data["platforms"])
    timeout = data.get("setup_timeout_seconds")
    if timeout is not None and timeout != -1 and not 0 < timeout <= MAX_SETUP_TIMEOUT_SECONDS:
        raise spec_error(
            [
                f"{field_path(['config', 'setup_timeout_seconds'])}: expected a positive "
                f"number of seconds, at most {MAX_SETUP_TIMEOUT_SECONDS} (7 days), or -1 for "
                f"no limit, got {timeout}"
            ]
        )
    return data


def _platforms(names: list[str]) -> list[str]:
    from runenv.envs.pylock import PLATFORMS

    unknown = [name for name in names if name not in PLATFORMS]
    if unknown or not names:
        raise SpecError(
            f"{field_path(['config', 'platforms'])}: "
            + (f"unknown platform {unknown[0]!r}" if unknown else "expected at least one platform"),
            hint=f"one or more of {', '.join(sorted(PLATFORMS))}",
        )
    return sorted(set(names))


def _upload_path(value: str, base_dir: Path) -> str:
    scheme = uris.scheme_of(value)
    if scheme is None:
        return str(_local_path(value, base_dir))
    if scheme not in uris.UPLOAD_SCHEMES:
        raise SpecError(
            f"{field_path(['upload_path'])}: cannot upload to {scheme}:// ({value})",
            hint=f"use a local path or one of: {', '.join(sorted(uris.UPLOAD_SCHEMES))}",
        )
    _check_file_host(value, field_path(["upload_path"]))
    if not value.split("://", 1)[1].strip("/"):
        raise SpecError(
            f"{field_path(['upload_path'])}: {value} names no bucket or directory",
            hint=f"e.g. {scheme}://my-bucket/runenv"
            if scheme != "file"
            else "e.g. file:///srv/runenv",
        )
    return value.rstrip("/")
