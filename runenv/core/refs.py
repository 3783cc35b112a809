"""Handles users hold: ObjectRef, ActorHandle. They pickle as ids, so they can be passed on."""

from __future__ import annotations

from typing import Any


class ObjectRef:
    """A future value, produced by ``f.remote()`` or ``put``."""

    __slots__ = ("id",)

    def __init__(self, object_id: str) -> None:
        self.id = object_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectRef, (self.id,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ObjectRef({self.id})"


class ActorHandle:
    """A running actor; ``handle.method.remote(...)`` calls it."""

    def __init__(self, actor_id: str, class_name: str, methods: tuple[str, ...]) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods

    def __reduce__(self) -> tuple[Any, ...]:
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
        from runenv.api import _runtime

        object_id = _runtime().submit_actor_task(self._handle._actor_id, self._name, args, kwargs)
        return ObjectRef(object_id)
