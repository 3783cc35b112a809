"""A task as the engine keeps it until it is over, and the errors tasks end with."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from runenv.core import messages
from runenv.core.refs import ObjectRef, Pin
from runenv.core.runtime import FunctionSpec
from runenv.core.serialization import Blob, RemoteFailure
from runenv.engine.envs import EnvState
from runenv.errors import EnvSetupError, RunenvError, RuntimeEnvSetupError

Kind = type[messages.RunTask] | type[messages.CreateActor] | type[messages.RunActorTask]


@dataclass(eq=False)
class Task:
    id: str  # also the id of its result object
    kind: Kind
    where: str  # for error messages: "task f", "actor Counter.incr"
    env: EnvState
    args: list[Any]  # Blobs, and ObjectRefs the driver resolves
    kwargs: dict[str, Any]
    pins: list[Pin] = field(default_factory=list)  # handles inside the arguments
    needs: tuple[str, ...] = ()  # the objects passed as top-level ObjectRef arguments
    function: FunctionSpec | None = None
    method: str | None = None
    actor_id: str | None = None
    num_cpus: float = 1.0
    retries_left: int = 0
    max_calls: int | None = None
    over: bool = False

    @classmethod
    def new(
        cls,
        kind: Kind,
        where: str,
        env: EnvState,
        args: list[Any],
        kwargs: dict[str, Any],
        **fields: Any,
    ) -> Task:
        values = [*args, *kwargs.values()]
        pins = [Pin(key) for value in values if isinstance(value, Blob) for key in value.refs]
        needs = tuple(value.id for value in values if isinstance(value, ObjectRef))
        return cls(uuid.uuid4().hex, kind, where, env, args, kwargs, pins, needs, **fields)

    @property
    def function_id(self) -> str:
        return self.function.id if self.function is not None else ""

    @property
    def counts_env_use(self) -> bool:
        """Plain tasks count as users of their env; an actor's calls use the actor's."""
        return self.kind is messages.RunTask

    def finish(self) -> bool:
        """Let go of its arguments; False if it was over already."""
        if self.over:
            return False
        self.over = True
        self.args, self.kwargs, self.pins = [], {}, []
        return True

    def message(self, resolved: dict[str, Blob | None]) -> messages.Work:
        """What the worker is sent, with each ObjectRef argument replaced by its value."""
        args = [_resolve(value, resolved) for value in self.args]
        kwargs = {name: _resolve(value, resolved) for name, value in self.kwargs.items()}
        if self.kind is messages.RunActorTask:
            assert self.method is not None
            return messages.RunActorTask(self.id, self.method, args, kwargs)
        assert self.function is not None
        return self.kind(self.id, self.function.id, args, kwargs)


def _resolve(value: Any, resolved: dict[str, Blob | None]) -> Any:
    return resolved[value.id] if isinstance(value, ObjectRef) else value


def exception_of(failure: RemoteFailure | RunenvError | None, where: str) -> BaseException:
    """What ``get`` raises for a failed object."""
    if isinstance(failure, RemoteFailure):
        return failure.to_exception(where)
    assert failure is not None
    # A copy: raising the stored error would tie its traceback (and the frames holding the
    # caller's refs) to the object table.
    return copy.copy(failure)


def describe(failure: RemoteFailure | RunenvError) -> str:
    """A failure in one line: ``ValueError: no config``."""
    if isinstance(failure, RemoteFailure):
        return f"{failure.type_name}: {failure.message}"
    return failure.message


def setup_error(task: Task, error: RunenvError) -> RuntimeEnvSetupError:
    if isinstance(error, RuntimeEnvSetupError):
        return error
    log_path = error.log_path if isinstance(error, EnvSetupError) else None
    return RuntimeEnvSetupError(
        f"{task.where}: runtime env setup failed: {error.message}",
        hint=error.hint,
        log_path=log_path,
    )


def start_error(task: Task, error: Exception) -> RunenvError:
    if isinstance(error, RunenvError):  # the launcher said what is wrong
        return RunenvError(f"{task.where}: could not start a worker: {error.message}", error.hint)
    return RunenvError(
        f"{task.where}: could not start a worker: {error}",
        hint="check that the env's Python runs: runenv env path <env file>",
    )
