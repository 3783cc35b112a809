"""Handles users hold: ObjectRef, ActorHandle, and the counting of them in this process.

Each process counts the handles it holds, as Ray's reference counter does: creating a handle
and dropping it append an event to :data:`EVENTS`, and the owner of the process (the engine in
the driver, the worker loop in a worker) drains them at safe points. ``__del__`` may run in any
thread at any time (it is called by the garbage collector), so it only appends — a
``deque.append`` is atomic — and never takes a lock or sends a message.

Pickling a handle inside a value records its key (see :func:`collect_keys`): a value that
contains a handle keeps what it names alive for as long as the value itself is kept.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# (key, +1 or -1) in the order handles were made and dropped; keys of actors start with "actor:".
EVENTS: deque[tuple[str, int]] = deque()
ACTOR_PREFIX = "actor:"
_collecting = threading.local()
# How handles pickle when another engine owns the objects (the Ray backend): set by that
# engine, so a pickled handle carries the engine's own reference and the engine tracks it.
Reducer = Callable[[str], "tuple[Any, ...]"]
_object_reducer: Reducer | None = None
_actor_reducer: Reducer | None = None


def set_reducers(object_reducer: Reducer | None, actor_reducer: Reducer | None) -> None:
    global _object_reducer, _actor_reducer
    _object_reducer, _actor_reducer = object_reducer, actor_reducer


def actor_key(actor_id: str) -> str:
    return ACTOR_PREFIX + actor_id


@contextmanager
def collect_keys() -> Iterator[list[str]]:
    """Within the block, every handle pickled on this thread adds its key to the list."""
    previous = getattr(_collecting, "keys", None)
    keys: list[str] = []
    _collecting.keys = keys
    try:
        yield keys
    finally:
        _collecting.keys = previous


def _pickled(key: str) -> None:
    keys = getattr(_collecting, "keys", None)
    if keys is not None:
        keys.append(key)


def _count(key: str, delta: int) -> None:
    try:  # noqa: SIM105 - at interpreter exit, even contextlib may be torn down already
        EVENTS.append((key, delta))
    except Exception:
        pass


class Pin:
    """Keeps what ``key`` names alive while the pin exists, like a handle nobody can use: the
    driver pins the handles inside a stored value or a task's arguments."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key
        _count(key, 1)

    def __del__(self) -> None:
        _count(self.key, -1)


class ObjectRef:
    """A future value, produced by ``f.remote()`` or ``put``."""

    __slots__ = ("id",)

    def __init__(self, object_id: str) -> None:
        self.id = object_id
        _count(object_id, 1)

    def __del__(self) -> None:
        _count(self.id, -1)

    def __reduce__(self) -> tuple[Any, ...]:
        if _object_reducer is not None:
            return _object_reducer(self.id)
        _pickled(self.id)
        return (ObjectRef, (self.id,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ObjectRef({self.id})"


class ActorHandle:
    """A running actor; ``handle.method.remote(...)`` calls it. The actor stops when no handle
    to it is left anywhere (unless it has a name: named actors live until killed)."""

    def __init__(self, actor_id: str, class_name: str, methods: tuple[str, ...]) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        _count(actor_key(actor_id), 1)

    def __del__(self) -> None:
        _count(actor_key(self._actor_id), -1)

    def __reduce__(self) -> tuple[Any, ...]:
        if _actor_reducer is not None:
            return _actor_reducer(self._actor_id)
        _pickled(actor_key(self._actor_id))
        return (ActorHandle, (self._actor_id, self._class_name, self._methods))

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name)

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self._actor_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        from runenv.core.runtime import engine

        object_id = engine().submit_actor_task(self._handle._actor_id, self._name, args, kwargs)
        return ObjectRef(object_id)


class LocalCounts:
    """This process's count of each key, fed from :data:`EVENTS`.

    :meth:`drain` returns the keys whose count went from 0 to some (held) or back to 0
    (released), in the order it happened, which is what the owner of an object must learn.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def drain(self) -> list[tuple[str, int]]:
        changes: list[tuple[str, int]] = []
        counts = self.counts
        while EVENTS:
            try:
                key, delta = EVENTS.popleft()
            except IndexError:  # another thread drained the last one
                break
            count = counts.get(key, 0) + delta
            if count > 0:
                counts[key] = count
                if count == delta:
                    changes.append((key, 1))
            else:
                counts.pop(key, None)
                if count == 0:
                    changes.append((key, -1))
        return changes
