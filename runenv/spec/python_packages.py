"""The ``pip`` / ``uv`` field: one shape for both, so nothing downstream has two near-copies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Tool = Literal["pip", "uv"]


def install_options_key(tool: str) -> str:
    """``pip_install_options`` for pip, ``uv_pip_install_options`` for uv (Ray's names)."""
    return "uv_pip_install_options" if tool == "uv" else "pip_install_options"


@dataclass(frozen=True)
class PythonPackages:
    """The ``pip`` or ``uv`` field: one shape for both, ``tool`` says which."""

    tool: Literal["pip", "uv"]
    packages: tuple[str, ...]
    check: bool = False
    version: str | None = None
    install_options: tuple[str, ...] = ()
    lock: Lock | None = None

    @classmethod
    def from_field(cls, tool: Literal["pip", "uv"], data: Mapping[str, Any]) -> PythonPackages:
        return cls(
            tool=tool,
            packages=tuple(data["packages"]),
            check=bool(data.get(f"{tool}_check", False)),
            version=data.get(f"{tool}_version"),
            install_options=tuple(data.get(install_options_key(tool), ())),
            lock=Lock.from_field(data["lock"]) if "lock" in data else None,
        )

    def to_field(self) -> dict[str, Any]:
        """Back to the canonical dict form of the ``pip`` / ``uv`` field."""
        data: dict[str, Any] = {"packages": list(self.packages), f"{self.tool}_check": self.check}
        if self.version is not None:
            data[f"{self.tool}_version"] = self.version
        if self.install_options:
            data[install_options_key(self.tool)] = list(self.install_options)
        if self.lock is not None:
            data["lock"] = self.lock.to_field()
        return data


@dataclass(frozen=True)
class Lock:
    """Pinned requirements for one Python version; with ``pylock``, a PEP 751 lock (as JSON
    data) naming every file by URL and sha256 for each of ``platforms``."""

    python: str
    requirements: tuple[str, ...]
    pylock: dict[str, Any] | None = field(default=None, hash=False)
    platforms: tuple[str, ...] = ()

    @classmethod
    def from_field(cls, data: Mapping[str, Any]) -> Lock:
        pylock = data.get("pylock")
        return cls(
            python=str(data["python"]),
            requirements=tuple(data["requirements"]),
            pylock=dict(pylock) if pylock is not None else None,
            platforms=tuple(data.get("platforms") or ()),
        )

    def to_field(self) -> dict[str, Any]:
        data: dict[str, Any] = {"python": self.python, "requirements": list(self.requirements)}
        if self.pylock is not None:
            data["pylock"] = self.pylock
            data["platforms"] = list(self.platforms)
        return data
