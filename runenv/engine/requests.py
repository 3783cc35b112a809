"""Requests from workers: the API called inside a task (nested ``remote``, ``get``, ``put``...).

Each request is answered on its own thread, so a nested ``get`` may wait as long as it must
without holding up the others. A task blocked in a nested ``get`` or ``wait`` gives its CPUs
back meanwhile (as Ray does), so nested work cannot deadlock on a full machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runenv.core import messages
from runenv.engine.objects import Failure
from runenv.engine.workers import WorkerProcess
from runenv.errors import RunenvError

if TYPE_CHECKING:
    from runenv.engine.local import LocalEngine


def answer(
    engine: LocalEngine, worker: WorkerProcess, request: messages.Request, task_id: str | None
) -> None:
    """Carry out ``request`` for ``worker``, which runs task ``task_id``, and send the reply
    (a thread's target)."""
    try:
        result = _carry_out(engine, worker, request, task_id)
        reply = messages.Reply(request.request_id, True, result)
    except _FailedObject as failed:
        reply = messages.Reply(request.request_id, False, failed.failure)
    except Exception as error:
        reply = messages.Reply(request.request_id, False, error)
    try:
        worker.send(reply)
    except Exception as error:  # e.g. an error that does not pickle: the worker must not hang
        failure = RunenvError(f"the driver could not send its answer: {error!r}")
        worker.send(messages.Reply(request.request_id, False, failure))


def _carry_out(
    engine: LocalEngine, worker: WorkerProcess, request: messages.Request, task_id: str | None
) -> Any:
    me = worker.worker_id
    match request.call:
        case messages.SubmitTask(spec, args, kwargs, options):
            base_dir = _caller_cwd(request)
            return engine.add_task(spec, args, kwargs, options, worker.env, base_dir, me)
        case messages.CreateActorCall(spec, args, kwargs, options):
            base_dir = _caller_cwd(request)
            return engine.add_actor(spec, args, kwargs, options, worker.env, base_dir, me)
        case messages.SubmitActorTask(actor_id, method, args, kwargs):
            return engine.add_actor_task(actor_id, method, args, kwargs, me)
        case messages.GetObjects(ids, timeout):
            with _CpusReleased(engine, worker, task_id):
                found = engine.wait_ready(ids, timeout)
            for item in found:
                if item.failure is not None:
                    raise _FailedObject((item.failure, item.where))
            return [item.blob for item in found]
        case messages.WaitObjects(ids, num_returns, timeout):
            with _CpusReleased(engine, worker, task_id):
                return engine.wait(ids, num_returns, timeout)
        case messages.PutObject(blob):
            return engine.store_blob(blob, me)
        case messages.GetActor(name):
            return engine.get_actor(name)
        case messages.KillActor(actor_id):
            return engine.kill(actor_id)
    raise RunenvError(f"unknown request {type(request.call).__name__}")


def _caller_cwd(request: messages.Request) -> Path:
    """Relative paths in a nested task's runtime_env are the caller's, as in the driver."""
    return Path(request.caller.get("cwd") or Path.cwd())


class _CpusReleased:
    """The CPUs of the task that made the request, lent while it waits."""

    def __init__(self, engine: LocalEngine, worker: WorkerProcess, task_id: str | None) -> None:
        self.engine = engine
        self.worker = worker
        self.task_id = task_id

    def __enter__(self) -> None:
        with self.engine.changed:
            task = self.worker.task
            if task is None or task.id != self.task_id:  # an actor's call, or over already
                self.task_id = None
                return
            self.engine.cpus.lend(task.id)
            self.engine.changed.notify_all()

    def __exit__(self, *exc: object) -> None:
        if self.task_id is not None:
            with self.engine.changed:
                self.engine.cpus.take_back(self.task_id)


class _FailedObject(Exception):
    """A nested ``get`` of a failed object: the worker raises it as ``get`` in the driver would."""

    def __init__(self, failure: tuple[Failure, str]) -> None:
        self.failure = failure
