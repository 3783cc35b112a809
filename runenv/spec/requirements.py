"""Requirement strings, and reading requirements.txt files into them and install options.

Every requirement is parsed as PEP 508 (``packaging.requirements``) and kept with its name and
extras in canonical form (``Six`` → ``six``, ``my_pkg`` → ``my-pkg``), so spellings of one
requirement give one env key; the rest stays as written.

Of requirements files, only what a runtime_env needs: comments, blank lines, line continuations,
``-r`` includes, and the index options (``--index-url``, ``--extra-index-url``, ``--find-links``,
``--no-index``) that become install options. Options are kept as single ``--flag=value`` tokens
so they can be de-duplicated.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from runenv.errors import SpecError
from runenv.spec.files import read_utf8

# Short and long spellings of the options that carry a value, mapped to the long spelling.
_VALUE_OPTIONS = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
    "-c": "--constraint",
    "--constraint": "--constraint",
}
_SHORT_WITH_VALUE = {"-i", "-f", "-c", "-r"}
_FLAG_OPTIONS = {"--no-index", "--pre", "--prefer-binary", "--only-binary", "--no-binary"}
_INCLUDE_OPTIONS = {"-r", "--requirement"}
_EDITABLE_OPTIONS = {"-e", "--editable"}
# Options whose value is a local path, resolved against the requirements file's directory.
_PATH_OPTIONS = {"--find-links", "--constraint"}
_COMMENT = re.compile(r"(^|\s+)#.*$")
# Requirements so plain that they are valid and canonical as written: no parser needed (the
# parser's import costs start-up time). "~=" is left out: it needs two release segments.
_PLAIN_REQUIREMENT = re.compile(
    r"[a-z0-9]+(?:-[a-z0-9]+)*(?:(?:==|!=|>=|<=|<|>)[0-9]+(?:\.[0-9]+)*)?"
)
_EXTRAS = re.compile(r"\s*\[[^\]]*\]")
# pip-compile's per-requirement hashes: the lock pins versions, and hashes were never checked.
_HASH_OPTION = re.compile(r"\s+--hash[= ]\S+")
REQUIREMENT_HINT = (
    "write PEP 508 requirements, e.g. `requests>=2`, `pkg[extra]; python_version >= '3.10'` "
    "or `pkg @ https://host/pkg-1.0-py3-none-any.whl` (a local wheel: `pkg @ file:///path`)"
)


@dataclass
class Requirements:
    """What a requirements file says: requirement strings and installer options, in order."""

    packages: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def read_requirements_file(path: Path, field_path: str) -> Requirements:
    """Read ``path`` (following ``-r`` includes) into requirement strings and install options."""
    result = Requirements()
    _read_into(path.resolve(), field_path, result, seen=set())
    result.packages = dedupe(result.packages)
    result.options = dedupe(result.options)
    return result


def canonical_requirement(text: str) -> str:
    """``text``, a PEP 508 requirement, with its name and extras in canonical form.

    Raises ValueError with the parser's reason when ``text`` is not a valid requirement.
    """
    if _PLAIN_REQUIREMENT.fullmatch(text):
        return text
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise ValueError(str(error).splitlines()[0]) from None
    rest = text.strip()[len(requirement.name) :]  # the name is written first, as it was parsed
    extras = _EXTRAS.match(rest)
    if extras is not None:
        names = sorted(canonicalize_name(extra) for extra in requirement.extras)
        rest = f"[{','.join(names)}]{rest[extras.end() :]}"
    return canonicalize_name(requirement.name) + rest


def invalid_requirement(where: str, text: str, reason: str) -> str:
    return f"{where}: invalid requirement {text!r}: {reason}"


def dedupe(items: list[str]) -> list[str]:
    """Remove repeated items, keeping the first occurrence of each."""
    return list(dict.fromkeys(items))


def _read_into(path: Path, field_path: str, result: Requirements, seen: set[Path]) -> None:
    if path in seen:
        return  # an include cycle: every file is read once
    seen.add(path)
    if not path.is_file():
        raise SpecError(
            f"{field_path}: requirements file not found: {path}",
            hint="check the path; relative paths are resolved against the current directory",
        )
    for line_number, line in _logical_lines(path, field_path):
        where = f"{field_path} ({path}:{line_number})"
        _read_line(line, path.parent, where, result, seen)


def _logical_lines(path: Path, where: str) -> list[tuple[int, str]]:
    """Lines with comments stripped and ``\\`` continuations joined, blank ones dropped."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(read_utf8(path, where).splitlines(), start=1):
        text = _COMMENT.sub("", raw).strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        text = (pending + text).strip()
        pending = ""
        if text:
            lines.append((start, text))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _read_line(line: str, base: Path, where: str, result: Requirements, seen: set[Path]) -> None:
    if not line.startswith("-"):
        line = _HASH_OPTION.sub("", line)
        try:
            result.packages.append(canonical_requirement(line))
        except ValueError as error:
            raise SpecError(
                invalid_requirement(where, line, str(error)), hint=REQUIREMENT_HINT
            ) from None
        return
    tokens = _split_option(line, where)
    name, value = tokens[0], tokens[1] if len(tokens) > 1 else None
    if name in _INCLUDE_OPTIONS:
        _read_into((base / _need(value, name, where)).resolve(), where, result, seen)
    elif name in _EDITABLE_OPTIONS:
        raise SpecError(
            f"{where}: editable requirement {line!r} is not supported in a runtime_env",
            hint="put the package directory in py_modules, or build a wheel and list its path",
        )
    elif name in _VALUE_OPTIONS:
        long_name = _VALUE_OPTIONS[name]
        option_value = _need(value, name, where)
        if long_name in _PATH_OPTIONS and "://" not in option_value:
            option_value = str((base / option_value).resolve())
        result.options.append(f"{long_name}={option_value}")
    elif name in _FLAG_OPTIONS:
        result.options.append(line if value is None else f"{name}={value}")
    else:
        raise SpecError(
            f"{where}: unsupported option line {line!r}",
            hint="supported: -r, -c, -i/--index-url, --extra-index-url, -f/--find-links, "
            "--no-index, --pre; pass other installer options in pip_install_options",
        )


def _split_option(line: str, where: str) -> list[str]:
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise SpecError(f"{where}: cannot parse {line!r}: {exc}") from None
    head = tokens[0]
    if head.startswith("--") and "=" in head:
        name, _, value = head.partition("=")
        return [name, value, *tokens[1:]]
    if len(head) > 2 and head[:2] in _SHORT_WITH_VALUE:
        return [head[:2], head[2:], *tokens[1:]]  # "-rother.txt", "-ihttps://..."
    return tokens


def _need(value: str | None, name: str, where: str) -> str:
    if not value:
        raise SpecError(f"{where}: option {name} needs a value")
    return value
