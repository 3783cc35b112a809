"""The ``conda`` field as a definition (an environment.yml's content): validated and canonical.

The canonical form is the environment.yml mapping, checked: ``name`` (kept, not used),
``channels``, ``dependencies`` (conda match specs, at most one ``{"pip": [...]}`` sub-list of
requirements and option lines), ``variables``, and — once the env is prepared — ``lock``
(:mod:`runenv.conda.lock`). ``prefix``, which ``conda env export`` writes, is dropped.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runenv.conda.lock import CondaLock
from runenv.errors import SpecError
from runenv.spec.errors import type_name
from runenv.spec.requirements import REQUIREMENT_HINT, canonical_requirement, invalid_requirement

FIELDS = ("name", "channels", "dependencies", "variables", "lock")
_DROPPED = ("prefix",)
SPEC_HINT = (
    "write it as an environment.yml: channels: [...], dependencies: ['python=3.11', "
    "'numpy>=1.26', {pip: ['requests']}]"
)
# Option lines of a pip sub-list that runenv passes on (each with its value, if any).
PIP_OPTIONS_WITH_VALUE = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
}
PIP_FLAGS = ("--no-index", "--pre")


@dataclass(frozen=True)
class CondaEnv:
    """A conda env to build: what the canonical ``conda`` mapping says."""

    channels: tuple[str, ...] = ()
    specs: tuple[str, ...] = ()  # conda match specs
    pip: tuple[str, ...] = ()  # requirements of the pip sub-list
    pip_options: tuple[str, ...] = ()  # its option lines, as installer arguments
    variables: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    lock: CondaLock | None = None

    @classmethod
    def from_field(cls, data: Mapping[str, Any]) -> CondaEnv:
        """From a canonical mapping (already validated)."""
        specs, pip_lines = [], []
        for dependency in data.get("dependencies", ()):
            if isinstance(dependency, str):
                specs.append(dependency)
            else:
                pip_lines += dependency["pip"]
        requirements, options = split_pip_lines(pip_lines)
        lock = data.get("lock")
        return cls(
            channels=tuple(data.get("channels", ())),
            specs=tuple(specs),
            pip=tuple(requirements),
            pip_options=tuple(options),
            variables=dict(data.get("variables", {})),
            name=data.get("name"),
            lock=CondaLock.from_field(lock) if lock is not None else None,
        )

    def without_lock(self) -> dict[str, Any]:
        """What was asked for (the lock left out): what a lock is cached by."""
        return {
            "channels": list(self.channels),
            "specs": list(self.specs),
            "pip": list(self.pip),
            "pip_options": list(self.pip_options),
        }


def split_pip_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """Requirements and installer arguments of a (valid) pip sub-list."""
    requirements, options = [], []
    for line in lines:
        if line.startswith("-"):
            options += shlex.split(line)
        else:
            requirements.append(line)
    return requirements, options


def normalize_conda(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The canonical form of an inline conda definition, or a SpecError naming the field."""
    problems: list[str] = []
    canonical: dict[str, Any] = {}
    for key, item in value.items():
        here = f"{where}.{key}"
        if key in _DROPPED:
            continue
        if key not in FIELDS:
            problems.append(f"{here}: {_unknown(str(key))}")
        elif key == "name":
            if item is not None and not isinstance(item, str):
                problems.append(f"{here}: expected a string, got {type_name(item)}")
            elif item:
                canonical["name"] = item
        elif key == "channels":
            canonical["channels"] = _channels(item, here, problems)
        elif key == "dependencies":
            canonical["dependencies"] = _dependencies(item, here, problems)
        elif key == "variables":
            canonical["variables"] = _variables(item, here, problems)
        else:
            canonical["lock"] = _lock(item, here, problems)
    if problems:
        raise _error(problems)
    return canonical


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; known fields: {', '.join(FIELDS)}"


def _channels(value: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list):
        problems.append(
            f"{where}: expected a list of channel names or URLs, got {type_name(value)}"
        )
        return []
    channels = []
    for index, channel in enumerate(value):
        if not isinstance(channel, str) or not channel.strip():
            problems.append(f"{where}[{index}]: expected a channel name or URL, got {channel!r}")
        elif channel.strip() not in channels:
            channels.append(channel.strip())
    return channels


def _dependencies(value: Any, where: str, problems: list[str]) -> list[Any]:
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of package specs, got {type_name(value)}")
        return []
    specs: list[Any] = []
    pip_lines: list[str] | None = None
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if isinstance(item, str):
            spec = _match_spec(item, here, problems)
            if spec is not None and spec not in specs:
                specs.append(spec)
        elif isinstance(item, Mapping) and set(item) == {"pip"}:
            if pip_lines is not None:
                problems.append(f"{here}: a second pip sub-list; list every pip package in one")
            pip_lines = _pip_lines(item["pip"], f"{here}.pip", problems)
        elif isinstance(item, Mapping):
            names = ", ".join(repr(key) for key in item if key != "pip") or "none"
            problems.append(f"{here}: a mapping in dependencies is {{pip: [...]}}; found {names}")
        else:
            problems.append(
                f"{here}: expected a package spec or {{pip: [...]}}, got {type_name(item)}"
            )
    if pip_lines is not None:
        specs.append({"pip": pip_lines})
    return specs


def _match_spec(text: str, where: str, problems: list[str]) -> str | None:
    from rattler import MatchSpec  # on use: only inline conda envs need it
    from rattler.exceptions import InvalidMatchSpecError

    spec = text.strip()
    try:
        MatchSpec(spec)
    except InvalidMatchSpecError as error:
        problems.append(f"{where}: {text!r} is not a conda package spec ({error})")
        return None
    return spec


def match_spec_name(spec: str) -> str | None:
    from rattler import MatchSpec

    return MatchSpec(spec).name.normalized


def _pip_lines(value: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of requirements, got {type_name(value)}")
        return []
    lines: list[str] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        text = item.strip() if isinstance(item, str) else ""
        if not text:
            problems.append(f"{here}: expected a requirement string, got {item!r}")
            continue
        line = (
            _pip_option(text, here, problems)
            if text[0] == "-"
            else _pip_requirement(text, here, problems)
        )
        if line is not None and line not in lines:
            lines.append(line)
    return lines


def _pip_requirement(text: str, where: str, problems: list[str]) -> str | None:
    try:
        return canonical_requirement(text)
    except ValueError as error:
        problems.append(invalid_requirement(where, text, str(error)))
        return None


def _pip_option(text: str, where: str, problems: list[str]) -> str | None:
    """An option line in its canonical form (``--index-url URL``), or None with a problem."""
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        problems.append(f"{where}: cannot read {text!r} ({error})")
        return None
    if len(tokens) == 1 and tokens[0].startswith("--") and "=" in tokens[0]:
        tokens = tokens[0].split("=", 1)  # --index-url=URL
    name, values = tokens[0], tokens[1:]
    if name in PIP_FLAGS and not values:
        return name
    if name in PIP_OPTIONS_WITH_VALUE and len(values) == 1:
        return f"{PIP_OPTIONS_WITH_VALUE[name]} {shlex.quote(values[0])}"
    known = ", ".join([*sorted(set(PIP_OPTIONS_WITH_VALUE.values())), *PIP_FLAGS])
    problems.append(f"{where}: {text!r} is not a pip option runenv passes on (known: {known})")
    return None


def _variables(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and isinstance(text, str) for name, text in value.items()
    ):
        problems.append(f"{where}: expected a mapping of variable names to strings")
        return {}
    return dict(value)


def _lock(value: Any, where: str, problems: list[str]) -> dict[str, Any]:
    try:
        return CondaLock.from_field(value).to_field()
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        problems.append(f"{where}: not a conda lock ({type(error).__name__}: {error})")
        return {}


def _error(problems: list[str]) -> SpecError:
    hint = REQUIREMENT_HINT if any("requirement" in problem for problem in problems) else SPEC_HINT
    if len(problems) == 1:
        return SpecError(problems[0], hint=hint)
    listed = "\n".join(f"  {problem}" for problem in problems)
    return SpecError(f"invalid conda env ({len(problems)} problems):\n{listed}", hint=hint)
