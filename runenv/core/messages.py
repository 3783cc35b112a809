"""The messages between the driver and its workers: small named tuples, one type per kind.

Named tuples pickle as a reference to their class and their fields, so they cost little more
than plain tuples, and both ends ``match`` on their type instead of on string tags.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# --- driver to worker ----------------------------------------------------------------------


class Init(NamedTuple):
    """Who the worker is: job id, worker id, actor id, runtime_env, max_concurrency."""

    identity: dict[str, Any]


class Define(NamedTuple):
    """A function or class the worker will be asked to run, by id from now on."""

    function_id: str
    pickled: bytes


class Forget(NamedTuple):
    """A function the worker may drop (the driver sends it again if it is needed again)."""

    function_id: str


class RunTask(NamedTuple):
    task_id: str
    function_id: str
    args: list[Any]
    kwargs: dict[str, Any]


class CreateActor(NamedTuple):
    task_id: str
    class_id: str
    args: list[Any]
    kwargs: dict[str, Any]


class RunActorTask(NamedTuple):
    task_id: str
    method: str
    args: list[Any]
    kwargs: dict[str, Any]


class Reply(NamedTuple):
    """The answer to a worker's :class:`Request`: a result, or an error to raise."""

    request_id: int
    ok: bool
    payload: Any


class Exit(NamedTuple):
    """Finish what is running and exit."""


Work = RunTask | CreateActor | RunActorTask

# --- worker to driver ----------------------------------------------------------------------


class Done(NamedTuple):
    task_id: str
    result: Any  # a Blob


class Failed(NamedTuple):
    task_id: str
    failure: Any  # a RemoteFailure


class Request(NamedTuple):
    """An API call made inside a task (one of the calls below), answered by a :class:`Reply`."""

    request_id: int
    caller: dict[str, Any]  # the task id and the cwd of the caller
    call: Call


# --- the calls a worker makes (the API inside a task) --------------------------------------


class SubmitTask(NamedTuple):
    function: Any  # a FunctionSpec, with an empty pickle when the driver has it already
    args: list[Any]
    kwargs: dict[str, Any]
    options: Any  # CallOptions


class CreateActorCall(NamedTuple):
    cls: Any  # a FunctionSpec
    args: list[Any]
    kwargs: dict[str, Any]
    options: Any  # CallOptions


class SubmitActorTask(NamedTuple):
    actor_id: str
    method: str
    args: list[Any]
    kwargs: dict[str, Any]


class GetObjects(NamedTuple):
    ids: list[str]
    timeout: float | None


class WaitObjects(NamedTuple):
    ids: list[str]
    num_returns: int
    timeout: float | None


class PutObject(NamedTuple):
    value: Any  # a Blob


class GetActor(NamedTuple):
    name: str


class KillActor(NamedTuple):
    actor_id: str


Call = (
    SubmitTask
    | CreateActorCall
    | SubmitActorTask
    | GetObjects
    | WaitObjects
    | PutObject
    | GetActor
    | KillActor
)


class Holds(NamedTuple):
    """Handles the worker began or stopped holding: (key, +1) or (key, -1), in order."""

    changes: list[tuple[str, int]]
