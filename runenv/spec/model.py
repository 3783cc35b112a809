"""``RuntimeEnv``: an immutable, validated runtime environment, its key, and ``merge``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from runenv.digests import canonical_json, key_of
from runenv.errors import SpecError
from runenv.spec.python_packages import PythonPackages

# Validation (pydantic, whose validators take ~100 ms to build) loads when a dict is validated:
# an env that is already canonical (a job's record, a recipe) is used without it.

# Fields that say how an env is set up or where code is uploaded, not what is in it.
_NOT_IN_KEY = ("config", "upload_path")
_MERGED_PER_KEY = ("env_vars", "config")


@dataclass(frozen=True)
class RuntimeEnvConfig:
    """How an environment is set up. ``setup_timeout_seconds == -1`` means no limit."""

    setup_timeout_seconds: int = 600
    eager_install: bool = True
    platforms: tuple[str, ...] | None = None  # None: this machine's and Linux x86_64, aarch64
    share_env: bool = False

    def __post_init__(self) -> None:
        if self.platforms is not None:  # canonical JSON holds a list
            object.__setattr__(self, "platforms", tuple(self.platforms))

    @property
    def setup_timeout(self) -> float | None:
        """The setup time limit in seconds, or None for no limit."""
        return None if self.setup_timeout_seconds == -1 else float(self.setup_timeout_seconds)


class RuntimeEnv:
    """A validated runtime environment.

    Built from the same fields as Ray's ``runtime_env`` dict, e.g.
    ``RuntimeEnv(working_dir=".", pip=["requests"], env_vars={"LOG_LEVEL": "debug"})``.
    Validation and normalization happen here, before anything is uploaded or installed.
    """

    def __init__(self, **fields: Any) -> None:
        from runenv.spec.normalize import normalize

        self._data = normalize(fields, Path.cwd())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> RuntimeEnv:
        """Validate a runtime_env dict; relative paths are resolved against ``base_dir`` (cwd)."""
        from runenv.spec.normalize import normalize

        return cls._from_canonical(normalize(data, base_dir or Path.cwd()))

    @classmethod
    def from_file(cls, path: str | Path, *, base_dir: Path | None = None) -> RuntimeEnv:
        """Read a runtime_env from a JSON or YAML file."""
        return cls.from_dict(read_env_file(Path(path)), base_dir=base_dir)

    @classmethod
    def _from_canonical(cls, data: dict[str, Any]) -> RuntimeEnv:
        env = cls.__new__(cls)
        env._data = data
        return env

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict: JSON-serializable, Ray's shape, accepted back by ``from_dict``."""
        copy: dict[str, Any] = json.loads(json.dumps(self._data))  # the caller may change it
        return copy

    def canonical_json(self) -> str:
        return canonical_json(self._data)

    @cached_property
    def key(self) -> str:
        """sha256 of what the env contains (``config`` and ``upload_path`` left out)."""
        content = {name: value for name, value in self._data.items() if name not in _NOT_IN_KEY}
        return key_of(content)

    def replace(self, **changes: Any) -> RuntimeEnv:
        """A copy with some fields changed (None removes a field), validated again."""
        data = {**self._data, **changes}
        return RuntimeEnv.from_dict({k: v for k, v in data.items() if v is not None})

    def is_empty(self) -> bool:
        return not self._data

    @property
    def working_dir(self) -> str | None:
        return self._data.get("working_dir")

    @property
    def py_modules(self) -> tuple[str, ...]:
        return tuple(self._data.get("py_modules", ()))

    @property
    def excludes(self) -> tuple[str, ...]:
        return tuple(self._data.get("excludes", ()))

    @property
    def pip(self) -> PythonPackages | None:
        return PythonPackages.from_field("pip", self._data["pip"]) if "pip" in self._data else None

    @property
    def uv(self) -> PythonPackages | None:
        return PythonPackages.from_field("uv", self._data["uv"]) if "uv" in self._data else None

    @property
    def python_packages(self) -> PythonPackages | None:
        """Whichever of ``pip`` and ``uv`` is set."""
        return self.pip or self.uv

    @property
    def conda(self) -> str | dict[str, Any] | None:
        value = self._data.get("conda")
        return json.loads(json.dumps(value)) if isinstance(value, dict) else value

    @property
    def env_vars(self) -> dict[str, str]:
        return dict(self._data.get("env_vars", {}))

    @property
    def config(self) -> RuntimeEnvConfig:
        return RuntimeEnvConfig(**self._data.get("config", {}))

    @property
    def upload_path(self) -> str | None:
        return self._data.get("upload_path")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuntimeEnv) and self.canonical_json() == other.canonical_json()

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def __repr__(self) -> str:
        return f"RuntimeEnv({self.canonical_json()})"


def merge(
    parent: RuntimeEnv | Mapping[str, Any], child: RuntimeEnv | Mapping[str, Any]
) -> RuntimeEnv:
    """The env of work started under ``parent`` that asks for ``child``.

    Each field the child sets replaces the parent's; ``env_vars`` and ``config`` merge per key,
    the child winning. A child that chooses its Python packages (``pip``, ``uv`` or ``conda``)
    replaces the parent's choice whichever field that was, since they cannot be combined.
    Either may be a runtime_env dict, validated first.
    """
    from runenv.spec.normalize import PYTHON_ENV_FIELDS

    merged = _as_env(parent, "parent").to_dict()
    overrides = _as_env(child, "child").to_dict()
    if any(name in overrides for name in PYTHON_ENV_FIELDS):
        for name in PYTHON_ENV_FIELDS:
            merged.pop(name, None)
    for name, value in overrides.items():
        if name in _MERGED_PER_KEY:
            merged[name] = {**merged.get(name, {}), **value}
        else:
            merged[name] = value
    return RuntimeEnv._from_canonical(merged)


def _as_env(value: object, role: str) -> RuntimeEnv:
    if isinstance(value, RuntimeEnv):
        return value
    if isinstance(value, Mapping):
        return RuntimeEnv.from_dict(value)
    from runenv.errors import UsageTypeError

    raise UsageTypeError(
        f"merge(): the {role} must be a RuntimeEnv or a runtime_env dict, "
        f"not {type(value).__name__}",
        hint="e.g. runenv.merge(RuntimeEnv(pip=['six']), {'env_vars': {'A': '1'}})",
    )


def read_env_file(path: Path) -> dict[str, Any]:
    """The dict in a JSON or YAML runtime_env file."""
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        raise SpecError(f"runtime_env file not found: {resolved}", hint="check the path")
    from runenv.spec.files import read_utf8

    data = _parse_env_text(read_utf8(resolved, "runtime_env file"), resolved)
    if not isinstance(data, dict):
        raise SpecError(
            f"{resolved}: expected a runtime_env mapping at the top, got {type(data).__name__}",
            hint="write the fields at the top level, e.g. `working_dir: .`",
        )
    return data


def _parse_env_text(text: str, path: Path) -> Any:
    import yaml  # on use: most envs come as dicts, not files

    from runenv.spec.files import one_line

    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SpecError(
            f"{path} is not valid JSON or YAML: {one_line(error)}",
            hint="check the syntax near that line",
        ) from None
    except RecursionError:
        raise SpecError(
            f"{path}: nested too deeply to read",
            hint="a runtime_env is a few levels deep; check how the file was generated",
        ) from None
