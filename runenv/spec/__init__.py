"""The runtime_env model: fields, validation, normalization, merge, canonical JSON and key."""

from __future__ import annotations

from runenv.spec.model import RuntimeEnv, RuntimeEnvConfig, merge, read_env_file
from runenv.spec.python_packages import Lock, PythonPackages
from runenv.spec.schema import json_schema

__all__ = [
    "Lock",
    "PythonPackages",
    "RuntimeEnv",
    "RuntimeEnvConfig",
    "json_schema",
    "merge",
    "read_env_file",
]
