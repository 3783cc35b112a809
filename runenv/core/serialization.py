"""Values in flight: serialized once, deserialized only by whoever needs the object.

The driver keeps results as :class:`Blob` and never needs to import the modules of a worker's
env to pass a value from one task to another.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass
from typing import Any

from runenv.core.protocol import dumps, loads
from runenv.core.refs import collect_keys
from runenv.errors import TaskError


@dataclass
class Blob:
    """A pickled value: the pickle stream, its out-of-band buffers, and the keys of the handles
    (ObjectRefs, ActorHandles) inside it, which stay alive while the value is kept."""

    stream: bytes
    buffers: list[Any]
    refs: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # The buffers travel out of band again when a Blob is inside a message.
        buffers = [pickle.PickleBuffer(b) for b in self.buffers]
        return (Blob, (self.stream, buffers, self.refs))

    def value(self) -> Any:
        return loads(self.stream, self.buffers)


def to_blob(value: Any) -> Blob:
    with collect_keys() as keys:
        stream, buffers = dumps(value)
    return Blob(stream, list(buffers), tuple(keys))


@dataclass
class RemoteFailure:
    """An exception raised by remote code: the exception itself if it pickles, and its text."""

    exception: Blob | None
    type_name: str
    message: str
    remote_traceback: str

    @classmethod
    def capture(cls, error: BaseException) -> RemoteFailure:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            blob: Blob | None = to_blob(error)
        except Exception:  # an exception that cannot be pickled still reports its text
            blob = None
        return cls(blob, type(error).__qualname__, str(error), text)

    def to_exception(self, where: str) -> TaskError:
        """The error ``get`` raises: a TaskError that is also an instance of the cause's type."""
        message = f"{where} raised {self.type_name}: {self.message}\n\n{self.remote_traceback}"
        cause = self._cause()
        error = as_instance_of(cause, message) if cause is not None else None
        if error is None:
            error = TaskError(message, hint="the remote traceback is above")
        error.cause_type_name = self.type_name
        error.remote_traceback = self.remote_traceback
        return error

    def _cause(self) -> BaseException | None:
        if self.exception is None:
            return None
        try:
            cause = self.exception.value()
        except Exception:  # its class is not importable here (it lives in the task's env)
            return None
        return cause if isinstance(cause, Exception) else None


def as_instance_of(cause: BaseException, message: str) -> TaskError | None:
    cause_type = type(cause)
    if isinstance(cause, TaskError):
        return cause
    try:
        combined = type(
            f"TaskError({cause_type.__name__})",
            (TaskError, cause_type),
            {
                "__init__": _init_combined,
                "__str__": _str_combined,
                "__reduce__": _reduce,
                "__getattr__": _cause_attribute,
            },
        )
        error: Any = BaseException.__new__(combined)
    except TypeError:  # a type that cannot be subclassed or built this way
        return None
    BaseException.__init__(error, message)
    error.message, error.hint, error.cause = message, None, cause
    made: TaskError = error
    return made


def _init_combined(self: Any, *args: Any) -> None:
    return None


def _cause_attribute(self: Any, name: str) -> Any:
    """Attributes the cause has (``error.code``, ``error.ref``) read through, as on the cause."""
    cause = self.__dict__.get("cause")
    if cause is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(cause, name)


def _str_combined(self: Any) -> str:
    return str(self.message)


def _reduce(self: Any) -> tuple[Any, ...]:
    return (TaskError, (self.message,))
