"""A solved conda env: every package by exact URL and sha256, for one platform.

Like the explicit form of conda-lock (or pixi's lock file), it names files, not versions to
look for, so every node installs exactly these packages however the channels have moved on.
Each package keeps what the installer needs without the channel's index (its dependencies and
``noarch`` kind order the linking). The pip sub-list's pins ride along, resolved for the
solved Python.

Credentials never enter a lock: a channel URL holding ``${VAR}`` is kept so, and expanded from
the environment of the process that downloads (see :mod:`runenv.conda.channels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runenv.spec.python_packages import Lock

# The fields of a locked package, as rattler's RepoDataRecord has them.
PACKAGE_FIELDS = (
    "name",
    "version",
    "build",
    "build_number",
    "subdir",
    "noarch",
    "depends",
    "constrains",
    "url",
    "channel",
    "file_name",
    "sha256",
    "md5",
    "size",
)


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    noarch: str | None  # "python", "generic" or None
    depends: tuple[str, ...]
    constrains: tuple[str, ...]
    url: str
    channel: str
    file_name: str
    sha256: str  # hex
    md5: str | None
    size: int | None

    @classmethod
    def from_field(cls, data: Mapping[str, Any]) -> LockedPackage:
        sha256 = str(data["sha256"])
        if len(sha256) != 64 or any(char not in "0123456789abcdef" for char in sha256):
            raise ValueError(f"{data.get('name')}: sha256 {sha256!r} is not 64 hex digits")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            build=str(data["build"]),
            build_number=int(data["build_number"]),
            subdir=str(data["subdir"]),
            noarch=None if data.get("noarch") is None else str(data["noarch"]),
            depends=tuple(str(item) for item in data.get("depends", ())),
            constrains=tuple(str(item) for item in data.get("constrains", ())),
            url=str(data["url"]),
            channel=str(data["channel"]),
            file_name=str(data["file_name"]),
            sha256=sha256,
            md5=None if data.get("md5") is None else str(data["md5"]),
            size=None if data.get("size") is None else int(data["size"]),
        )

    def to_field(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in PACKAGE_FIELDS}
        data["depends"], data["constrains"] = list(self.depends), list(self.constrains)
        return data

    @property
    def spec(self) -> str:
        """``name version build`` (what ``runenv env show`` lists)."""
        return f"{self.name} {self.version} {self.build}"


@dataclass(frozen=True)
class CondaLock:
    """The solved packages of a conda env for ``platform`` (e.g. linux-64)."""

    platform: str
    python: str  # the solved Python's version, e.g. 3.11.7
    channels: tuple[str, ...]
    packages: tuple[LockedPackage, ...]
    pip: Lock | None = None  # the pip sub-list's pins

    @classmethod
    def from_field(cls, data: Mapping[str, Any]) -> CondaLock:
        pip = data.get("pip")
        return cls(
            platform=str(data["platform"]),
            python=str(data["python"]),
            channels=tuple(str(channel) for channel in data["channels"]),
            packages=tuple(LockedPackage.from_field(item) for item in data["packages"]),
            pip=Lock.from_field(pip) if pip is not None else None,
        )

    def to_field(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "platform": self.platform,
            "python": self.python,
            "channels": list(self.channels),
            "packages": [package.to_field() for package in self.packages],
        }
        if self.pip is not None:
            data["pip"] = self.pip.to_field()
        return data

    def explicit_urls(self) -> list[str]:
        """Each package's URL, with ``#md5`` as conda's explicit files write it (conda checks
        no sha256 there), in the order of the lock."""
        return [f"{p.url}#{p.md5}" if p.md5 else p.url for p in self.packages]


_MACHINES = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64"}


def current_platform() -> str:
    """This machine's conda platform (linux-64, osx-arm64, ...), as rattler names it, without
    loading rattler."""
    import platform
    import sys

    machine = platform.machine().lower()
    arch = _MACHINES.get(machine, machine)
    if sys.platform.startswith("linux"):
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return f"osx-{'arm64' if arch in ('aarch64', 'arm64') else arch}"
    if sys.platform == "win32":
        return f"win-{arch}"
    return f"{sys.platform}-{arch}"
