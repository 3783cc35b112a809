"""PEP 751 locks (``pylock.toml``) for a set of target platforms.

A lock is resolved once, universally (``uv pip compile --universal --format pylock.toml``), on
the submitting machine. It names every file by URL and sha256, with each package's environment
marker, so each node installs exactly those files, choosing the ones for itself. runenv keeps
only what its target platforms (``config.platforms``) can use: the wheels whose tags fit one of
them and the packages whose marker holds on one of them; and it checks that every package a
platform needs has a wheel for it or an sdist.

Platforms are named as uv names them (``x86_64-unknown-linux-gnu``, ``aarch64-apple-darwin``,
``x86_64-pc-windows-msvc``).
"""

from __future__ import annotations

import json
import platform as host_platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runenv.errors import EnvSetupError

LINUX_X86_64 = "x86_64-unknown-linux-gnu"
LINUX_AARCH64 = "aarch64-unknown-linux-gnu"
FILE_NAME = "pylock.toml"


@dataclass(frozen=True)
class Platform:
    """A target platform: its marker values and the wheel platform tags it installs."""

    name: str
    sys_platform: str
    platform_system: str
    machine: str
    os_name: str
    tag_prefixes: tuple[str, ...]
    tag_suffixes: tuple[str, ...]

    def accepts_tag(self, tag: str) -> bool:
        if tag == "any":
            return True
        return tag.startswith(self.tag_prefixes) and tag.endswith(self.tag_suffixes)


def _linux(machine: str) -> Platform:
    return Platform(
        f"{machine}-unknown-linux-gnu",
        "linux",
        "Linux",
        machine,
        "posix",
        ("manylinux", "linux_"),
        (f"_{machine}",),
    )


def _macos(machine: str, wheel_machines: tuple[str, ...]) -> Platform:
    suffixes = tuple(f"_{name}" for name in (*wheel_machines, "universal2"))
    return Platform(
        f"{machine}-apple-darwin", "darwin", "Darwin", machine, "posix", ("macosx_",), suffixes
    )


def _windows(machine: str, wheel_tag: str) -> Platform:
    return Platform(
        f"{machine}-pc-windows-msvc",
        "win32",
        "Windows",
        "AMD64" if machine == "x86_64" else "ARM64",
        "nt",
        (wheel_tag,),
        ("",),
    )


PLATFORMS: dict[str, Platform] = {
    known.name: known
    for known in (
        _linux("x86_64"),
        _linux("aarch64"),
        _macos("aarch64", ("arm64",)),
        _macos("x86_64", ("x86_64", "intel")),
        _windows("x86_64", "win_amd64"),
        _windows("aarch64", "win_arm64"),
    )
}


def here() -> str:
    """The name of this machine's platform (as uv names it)."""
    machine = host_platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    system = {"linux": "unknown-linux-gnu", "darwin": "apple-darwin", "win32": "pc-windows-msvc"}
    return f"{machine}-{system.get(sys.platform, sys.platform)}"


def default_platforms() -> tuple[str, ...]:
    """This machine's platform (when runenv knows it), and Linux on x86_64 and aarch64 (where
    clusters run)."""
    known = {here()} & set(PLATFORMS)
    return tuple(sorted({*known, LINUX_X86_64, LINUX_AARCH64}))


def checked_platform(name: str, where: str = "config.platforms") -> Platform:
    known = PLATFORMS.get(name)
    if known is None:
        raise EnvSetupError(
            f"runtime_env.{where}: unknown platform {name!r}",
            hint=f"one of {', '.join(sorted(PLATFORMS))}",
        )
    return known


def marker_environment(target: Platform, python: str) -> dict[str, str]:
    """The PEP 508 marker values of CPython ``python`` on ``target``."""
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "implementation_version": python,
        "sys_platform": target.sys_platform,
        "platform_system": target.platform_system,
        "platform_machine": target.machine,
        "os_name": target.os_name,
        "platform_release": "",
        "platform_version": "",
    }


def marker_holds(package: Mapping[str, Any], target: Platform, python: str) -> bool:
    marker = package.get("marker")
    if not marker:
        return True
    from packaging.markers import Marker

    return bool(Marker(str(marker)).evaluate(marker_environment(target, python)))


def wheel_fits(filename: str, target: Platform, python: str) -> bool:
    """Whether CPython ``python`` on ``target`` can install the wheel called ``filename``."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    major, minor = (int(part) for part in python.split(".")[:2])
    return any(_tag_fits(tag, target, major, minor) for tag in tags)


def _tag_fits(tag: Any, target: Platform, major: int, minor: int) -> bool:
    interpreter, abi = tag.interpreter, tag.abi
    own = f"cp{major}{minor}"
    if interpreter in ("py3", f"py{major}{minor}", own) and abi in ("none", own):
        return target.accepts_tag(tag.platform)
    if interpreter.startswith("cp3") and abi == "abi3" and int(interpreter[3:] or 0) <= minor:
        return target.accepts_tag(tag.platform)
    return False


def wheel_name(wheel: Mapping[str, Any]) -> str:
    """A wheel entry's file name: its ``name``, else the last part of its URL or path."""
    name = wheel.get("name") or str(wheel.get("url") or wheel.get("path") or "").rsplit("/", 1)[-1]
    return str(name).split("#", 1)[0].split("?", 1)[0]


def for_platforms(lock: Mapping[str, Any], names: Sequence[str], python: str) -> dict[str, Any]:
    """``lock`` keeping what the platforms ``names`` can use; an EnvSetupError naming each
    package a platform needs and has no file for."""
    targets = [checked_platform(name) for name in names]
    kept, missing = [], []
    for package in lock.get("packages", []):
        needed_by = [target for target in targets if marker_holds(package, target, python)]
        if not needed_by:
            continue
        wheels = [
            wheel
            for wheel in package.get("wheels", [])
            if any(wheel_fits(wheel_name(wheel), target, python) for target in needed_by)
        ]
        buildable = any(key in package for key in ("sdist", "archive", "directory", "vcs"))
        for target in needed_by:
            if not buildable and not any(wheel_fits(wheel_name(w), target, python) for w in wheels):
                missing.append(f"{package['name']}=={package.get('version', '?')} ({target.name})")
        trimmed = {key: value for key, value in package.items() if key != "wheels"}
        if wheels:
            trimmed["wheels"] = wheels
        kept.append(trimmed)
    if missing:
        raise EnvSetupError(
            f"the lock has no wheel (and no sdist) of {', '.join(missing)}",
            hint="pin versions that publish wheels for these platforms, or leave the platforms "
            "out of config.platforms",
            step="resolve",
        )
    return {**{key: value for key, value in lock.items() if key != "packages"}, "packages": kept}


def pins(lock: Mapping[str, Any]) -> tuple[str, ...]:
    """The lock as requirement strings (``name==version ; marker``): for reading, and for
    installers that take no lock file (Ray's own ``pip`` field)."""
    pinned = []
    for package in lock.get("packages", []):
        text = (
            f"{package['name']}=={package['version']}" if "version" in package else package["name"]
        )
        pinned.append(f"{text} ; {package['marker']}" if package.get("marker") else text)
    return tuple(pinned)


def parse(text: str, where: str) -> dict[str, Any]:
    """A ``pylock.toml``'s content as JSON-able data (dates as strings)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise EnvSetupError(f"{where} is not valid TOML: {error}", hint="check the file") from None
    if not isinstance(data.get("packages"), list) or "lock-version" not in data:
        raise EnvSetupError(
            f"{where} is not a PEP 751 lock (no lock-version or packages)",
            hint="write it with `runenv env lock` or `uv pip compile --format pylock.toml`",
        )
    plain: dict[str, Any] = json.loads(json.dumps(_without_dates(data)))
    return plain


def _without_dates(value: Any) -> Any:
    """``value`` without its TOML dates (PEP 751's optional ``upload-time``): JSON has no date
    type, and a date written back as a string is not a valid lock."""
    import datetime

    if isinstance(value, dict):
        return {
            key: _without_dates(item)
            for key, item in value.items()
            if not isinstance(item, (datetime.date, datetime.time))
        }
    if isinstance(value, list):
        return [_without_dates(item) for item in value]
    return value


def render(lock: Mapping[str, Any]) -> str:
    """``lock`` as ``pylock.toml`` text: top-level values, then one ``[[packages]]`` table each."""
    lines = [f"{key} = {_value(value)}" for key, value in lock.items() if key != "packages"]
    for package in lock.get("packages", []):
        lines += ["", "[[packages]]"]
        lines += [f"{_key(key)} = {_value(value)}" for key, value in package.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Iterable):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a lock")
