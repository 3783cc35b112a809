"""The runtime behind the API: the engine in the driver, or a client of it in a worker."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CallOptions:
    """Options of one task or actor, as given to ``remote``/``options``."""

    runtime_env: dict[str, Any] | None = None
    num_cpus: float | None = None
    max_retries: int | None = None
    max_calls: int | None = None
    name: str | None = None
    max_concurrency: int | None = None

    def merged(self, **changes: Any) -> CallOptions:
        given = {key: value for key, value in changes.items() if value is not None}
        return CallOptions(**{**self.__dict__, **given})


@dataclass(frozen=True)
class FunctionSpec:
    """A function or class shipped by value, identified by the hash of its pickle."""

    id: str
    name: str
    pickled: bytes = field(repr=False)
    methods: tuple[str, ...] = ()  # for a class: the methods its actor handles offer


class Runtime(Protocol):
    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> Any: ...

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> Any: ...

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any: ...

    def get(self, ids: Sequence[str], timeout: float | None) -> list[Any]: ...

    def wait(
        self, ids: Sequence[str], num_returns: int, timeout: float | None
    ) -> tuple[list[str], list[str]]: ...

    def put(self, value: Any) -> str: ...

    def get_actor(self, name: str) -> Any: ...

    def kill(self, actor_id: str) -> None: ...

    def runtime_context(self) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime | None:
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    with _lock:
        _current = runtime
