"""The object table: values of tasks and ``put``s, freed when nothing refers to them.

An object is held by the processes that have a handle to it (the driver counts as one holder,
each worker as another) and by the values and task arguments that contain a handle to it (they
keep a :class:`~runenv.core.refs.Pin`, which counts in the driver). When its last holder lets
go, the object is gone — whether or not its task has finished: a late result is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runenv.core.refs import Pin
from runenv.core.serialization import Blob, RemoteFailure
from runenv.errors import RunenvError

Failure = RemoteFailure | RunenvError
DRIVER = "driver"  # the holder name of the driver process itself


@dataclass(eq=False)
class StoredObject:
    where: str  # what made it, for error messages: "task f", "put"
    blob: Blob | None = None
    failure: Failure | None = None
    holders: set[str] = field(default_factory=set)
    contained: list[Pin] = field(default_factory=list)  # handles inside the value

    @property
    def ready(self) -> bool:
        return self.blob is not None or self.failure is not None


class ObjectTable:
    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._held_by: dict[str, set[str]] = {}  # holder -> object ids, to let go all at once

    def __len__(self) -> int:
        return len(self._objects)

    def create(self, object_id: str, where: str, holder: str | None = None) -> StoredObject:
        """A new object; ``holder`` holds it from the start (a worker that asked for it)."""
        stored = self._objects[object_id] = StoredObject(where)
        if holder is not None:
            self.hold(object_id, holder)
        return stored

    def find(self, object_id: str) -> StoredObject | None:
        return self._objects.get(object_id)

    def get(self, object_id: str) -> StoredObject:
        found = self._objects.get(object_id)
        if found is None:
            raise stale_ref_error()
        return found

    def fulfil(self, object_id: str, blob: Blob) -> None:
        stored = self._objects.get(object_id)
        if stored is not None and not stored.ready:  # not failed by the driver meanwhile
            stored.blob = blob
            stored.contained = [Pin(key) for key in blob.refs]

    def fail(self, object_id: str, failure: Failure) -> None:
        stored = self._objects.get(object_id)
        if stored is not None and not stored.ready:
            stored.failure = failure
            if isinstance(failure, RemoteFailure) and failure.exception is not None:
                # An exception may carry handles too (``raise Boom(ref)``).
                stored.contained = [Pin(key) for key in failure.exception.refs]

    def hold(self, object_id: str, holder: str) -> None:
        stored = self._objects.get(object_id)
        if stored is not None:
            stored.holders.add(holder)
            self._held_by.setdefault(holder, set()).add(object_id)

    def release(self, object_id: str, holder: str) -> None:
        stored = self._objects.get(object_id)
        if stored is None:
            return
        stored.holders.discard(holder)
        held = self._held_by.get(holder)
        if held is not None:
            held.discard(object_id)
            if not held:
                del self._held_by[holder]
        if not stored.holders:
            del self._objects[object_id]  # its pins go with it: what it contains is let go

    def release_all(self, holder: str) -> None:
        """Everything ``holder`` held (a worker that exited)."""
        for object_id in list(self._held_by.get(holder, ())):
            self.release(object_id, holder)

    def fail_unfinished(self, failure: Callable[[str], Failure]) -> None:
        """Fail every object still waiting for its task with ``failure(where)``."""
        for stored in self._objects.values():
            if not stored.ready:
                stored.failure = failure(stored.where)


def stale_ref_error() -> RunenvError:
    return RunenvError(
        "this ObjectRef belongs to a runenv session that was shut down",
        hint="refs do not survive runenv.shutdown(); submit the work again after runenv.init()",
    )
