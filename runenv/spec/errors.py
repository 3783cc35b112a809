"""Turning pydantic's validation errors into runenv's: one line per problem, named by field path."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from runenv.errors import SpecError
from runenv.spec.schema import TAG_MARK, ConfigInput, PipInput, RuntimeEnvInput, UvInput

ROOT = "runtime_env"
SCHEMA_HINT = "run `runenv env schema` to see every field and the forms it accepts"

_EXPECTED = {
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
# Fields known at each level, for "did you mean" suggestions.
_FIELDS_AT: dict[str, type[BaseModel]] = {
    "": RuntimeEnvInput,
    "config": ConfigInput,
    "pip": PipInput,
    "uv": UvInput,
}
# Ray fields runenv does not implement: say so instead of suggesting a near name.
_RAY_ONLY_FIELDS = {
    "container": "use a working_dir and pip/uv/conda instead of a container image",
    "image_uri": "use a working_dir and pip/uv/conda instead of a container image",
    "java_jars": "runenv runs Python only",
    "nsight": "profile the process yourself (e.g. with env_vars)",
    "mpi": "runenv does not start MPI jobs",
    "worker_process_setup_hook": "run the setup at the top of your task or actor",
    "py_executable": "choose the interpreter with pip/uv (the caller's Python is used)",
}


def field_path(loc: Sequence[str | int]) -> str:
    """``("pip", "packages", 2)`` → ``runtime_env.pip.packages[2]``."""
    text = ROOT
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith(TAG_MARK):
            text += f".{part}"
    return text


def spec_error(problems: list[str], hint: str = SCHEMA_HINT) -> SpecError:
    """One SpecError for one or more problems, each a ``field: what is wrong`` line."""
    if len(problems) == 1:
        return SpecError(problems[0], hint=hint)
    listed = "\n".join(f"  {problem}" for problem in problems)
    return SpecError(f"invalid runtime_env ({len(problems)} problems):\n{listed}", hint=hint)


def from_validation_error(error: ValidationError) -> SpecError:
    return spec_error([describe(detail) for detail in error.errors()])


def describe(detail: Any) -> str:
    loc = [part for part in detail["loc"] if not str(part).startswith(TAG_MARK)]
    kind = detail["type"]
    if loc and loc[-1] == "[key]":  # a mapping key of the wrong type
        return f"{field_path(loc[:-2])}: key {loc[-2]!r} must be a string"
    where = field_path(loc)
    if kind == "extra_forbidden":
        return f"{where}: {_unknown_field(loc)}"
    if kind == "missing":
        return f"{where}: required field is missing"
    got = type_name(detail.get("input"))
    if kind == "wrong_kind":
        return f"{where}: expected {detail['msg']}, got {got}"
    if kind == "string_too_short":
        return f"{where}: expected a non-empty string"
    expected = _EXPECTED.get(kind)
    if expected:
        return f"{where}: expected {expected}, got {got}"
    return f"{where}: {detail['msg']}"


def _unknown_field(loc: list[str | int]) -> str:
    name = str(loc[-1])
    parent = ".".join(str(part) for part in loc[:-1])
    if parent == "" and name in _RAY_ONLY_FIELDS:
        return f"Ray's field {name!r} is not supported by runenv ({_RAY_ONLY_FIELDS[name]})"
    model = _FIELDS_AT.get(parent)
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; known fields: {', '.join(known)}"


def type_name(value: Any) -> str:
    """What a JSON/YAML value is, as an error message says it ("a mapping", "a list", "int")."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
