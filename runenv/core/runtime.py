"""The engine behind the API: the embedded engine in the driver, or a client of it in a worker.

``runenv/api.py`` talks only to the :class:`Engine` protocol; the Ray backend will be a second
implementation. The driver's engine is started on first use by the starter the API registers,
so this module (which workers import) needs nothing of the driver side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runenv.errors import RunenvError


@dataclass(frozen=True)
class CallOptions:
    """Options of one task or actor, as given to ``remote``/``options``."""

    runtime_env: dict[str, Any] | None = None
    num_cpus: float | None = None
    max_retries: int | None = None
    max_calls: int | None = None
    name: str | None = None
    max_concurrency: int | None = None
    resources: dict[str, float] | None = None  # custom resources (on Ray: e.g. a node's)

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
    # The function or class itself, in the process that made the spec (engines that pickle
    # it their own way, like Ray, take it instead of the pickle).
    target: Any = field(default=None, repr=False, compare=False)


class Engine(Protocol):
    """What runs tasks and actors and keeps their objects. Ids are strings; the API wraps them
    in ObjectRef and ActorHandle."""

    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> str: ...

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> str: ...

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> str: ...

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
_current: Engine | None = None
_starter: Callable[[], Engine] | None = None


def current() -> Engine | None:
    return _current


def install(engine: Engine | None) -> None:
    global _current
    with _lock:
        _current = engine


def set_starter(starter: Callable[[], Engine]) -> None:
    """How :func:`engine` starts one on first use (the driver's API registers the embedded
    engine; in a worker the client is installed before any user code runs)."""
    global _starter
    _starter = starter


def engine() -> Engine:
    """The running engine, started on first use as in Ray."""
    global _current
    found = _current
    if found is not None:
        return found
    with _lock:
        if _current is None and _starter is not None:
            _current = _starter()
        found = _current
    if found is None:
        raise RunenvError("runenv is not running", hint="call runenv.init() first")
    return found
