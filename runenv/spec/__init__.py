"""The runtime_env model: fields, validation, normalization, merge, canonical JSON and key."""

from __future__ import annotations

from runenv.spec.model import RuntimeEnv, RuntimeEnvConfig, merge, read_env_file
from runenv.spec.python_packages import Lock, PythonPackages

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runenv.spec.schema import json_schema


def __getattr__(name: str) -> object:
    if name == "json_schema":  # pydantic's schema: loaded when asked for
        from runenv.spec.schema import json_schema

        return json_schema
    raise AttributeError(f"module 'runenv.spec' has no attribute {name!r}")


__all__ = [
    "Lock",
    "PythonPackages",
    "RuntimeEnv",
    "RuntimeEnvConfig",
    "json_schema",
    "merge",
    "read_env_file",
]
