"""runenv's handles over Ray's: each ObjectRef / ActorHandle names a Ray ref this process keeps.

The API hands out runenv's own ObjectRef and ActorHandle (so user code is the same on both
engines); this table maps their ids to Ray's references and lets go of a Ray reference when the
last runenv handle naming it is dropped (fed by :data:`runenv.core.refs.EVENTS`, as the
embedded engine's counting is). Ray then does the cluster-wide counting itself.

A handle pickled while Ray serializes (a ref inside a task's arguments or result) carries
Ray's reference, so Ray knows who borrows it; it is rebuilt as a runenv handle on the other
side, in whichever process unpickles it.
"""

from __future__ import annotations

import threading
from typing import Any

from runenv.core import refs
from runenv.core.refs import ACTOR_PREFIX, ActorHandle, LocalCounts, ObjectRef
from runenv.errors import RunenvError


class HandleTable:
    """The Ray references behind this process's runenv handles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = LocalCounts()
        self._objects: dict[str, Any] = {}  # runenv object id -> ray.ObjectRef
        # actor id -> Ray's handle, class name, methods
        self._actors: dict[str, tuple[Any, str, tuple[str, ...]]] = {}
        self._bound: dict[tuple[str, str], Any] = {}  # (actor id, method) -> Ray's bound method

    def drain(self) -> None:
        """Forget the Ray references no runenv handle names any more."""
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        for key, change in self._counts.drain():
            if change < 0:
                if key.startswith(ACTOR_PREFIX):
                    actor_id = key.removeprefix(ACTOR_PREFIX)
                    entry = self._actors.pop(actor_id, None)
                    for name in entry[2] if entry else ():
                        self._bound.pop((actor_id, name), None)
                else:
                    self._objects.pop(key, None)

    def add_object(self, ray_ref: Any) -> str:
        object_id: str = ray_ref.hex()
        with self._lock:
            self._drain()  # a release still pending for this id must not drop the new entry
            self._objects.setdefault(object_id, ray_ref)
        return object_id

    def add_actor(self, ray_handle: Any, class_name: str, methods: tuple[str, ...]) -> str:
        actor_id: str = ray_handle._actor_id.hex()
        with self._lock:
            self._drain()
            # The first handle stays: Ray ties an actor's life to its creator's handle, not
            # to ones found by name.
            self._actors.setdefault(actor_id, (ray_handle, class_name, methods))
        return actor_id

    def object(self, object_id: str) -> Any:
        found = self._objects.get(object_id)
        if found is None:
            raise RunenvError(
                f"ObjectRef({object_id}) is not known to this runenv session",
                hint="refs do not survive runenv.shutdown(); submit the work again after init()",
            )
        return found

    def method(self, actor_id: str, name: str) -> Any:
        """Ray's bound method ``name`` of the actor, made once per actor (Ray makes a new one
        on every attribute access)."""
        bound = self._bound.get((actor_id, name))
        if bound is None:
            bound = getattr(self.actor(actor_id), name)
            self._bound[(actor_id, name)] = bound
        return bound

    def actor(self, actor_id: str) -> Any:
        return self.actor_info(actor_id)[0]

    def actor_info(self, actor_id: str) -> tuple[Any, str, tuple[str, ...]]:
        """Ray's handle of the actor, its class name and its methods."""
        found = self._actors.get(actor_id)
        if found is None:
            raise RunenvError(
                f"actor {actor_id} is not known to this runenv session",
                hint="handles do not survive runenv.shutdown()",
            )
        return found

    def sizes(self) -> dict[str, int]:
        return {"objects": len(self._objects), "actors": len(self._actors)}

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self._actors.clear()
            self._bound.clear()


# The table of this process; the reducers below need it while Ray pickles.
TABLE = HandleTable()


def install_reducers() -> None:
    refs.set_reducers(_reduce_object, _reduce_actor)


def remove_reducers() -> None:
    refs.set_reducers(None, None)


def _reduce_object(object_id: str) -> tuple[Any, ...]:
    return (_rebuild_object, (TABLE.object(object_id),))


def _reduce_actor(actor_id: str) -> tuple[Any, ...]:
    return (_rebuild_actor, TABLE.actor_info(actor_id))


# In a Ray worker, arguments are unpickled before runenv's task body installs the worker's
# engine; the table is the process's own, so the handles are ready for it. A process that
# rebuilds handles pickles them back as Ray's too (the Ray Client's server does both).


def _rebuild_object(ray_ref: Any) -> ObjectRef:
    install_reducers()
    return ObjectRef(TABLE.add_object(ray_ref))


def _rebuild_actor(ray_handle: Any, class_name: str, methods: tuple[str, ...]) -> ActorHandle:
    install_reducers()
    return ActorHandle(TABLE.add_actor(ray_handle, class_name, methods), class_name, methods)
