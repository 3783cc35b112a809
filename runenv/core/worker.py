"""The worker process: runs tasks or one actor for the driver, and is a client of it.

Started by the driver as ``python -c BOOTSTRAP ...`` (:mod:`runenv.engine.workers`) in the
Context of its env. A reader thread takes messages from the driver; tasks run on the main
thread in order (an actor with ``max_concurrency`` > 1 uses a pool). Calls to the API inside a
task (nested ``remote``, ``get``, ...) are requests to the driver, answered through the reader.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from runenv.core import messages
from runenv.core import runtime as runtimes
from runenv.core.protocol import Connection
from runenv.core.refs import ActorHandle, LocalCounts, ObjectRef
from runenv.core.runtime import CallOptions, FunctionSpec
from runenv.core.serialization import Blob, RemoteFailure, to_blob
from runenv.errors import ActorDiedError, RunenvError, UnknownFunctionError

FLUSH_SECONDS = 0.5  # how often an idle worker tells the driver of handles it dropped


def main(fd: int) -> None:
    connection = Connection(socket.socket(fileno=fd))
    worker = Worker(connection)
    runtimes.install(worker.client)
    try:
        worker.serve()
    finally:
        connection.close()
        os._exit(0)  # no atexit or thread joins: the driver owns this process's lifetime


class Outbox:
    """Sends to the driver; before each message, the handles this process began or stopped
    holding since the last one, so the driver learns of a hold before anything that relies
    on it (a task's result, a request)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.counts = LocalCounts()
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self._lock:
            changes = self.counts.drain()
            if changes:
                self.connection.send(messages.Holds(changes))
            self.connection.send(message)

    def flush(self) -> None:
        with self._lock:
            changes = self.counts.drain()
            if changes:
                self.connection.send(messages.Holds(changes))


class Worker:
    def __init__(self, connection: Connection) -> None:
        self.outbox = Outbox(connection)
        self.connection = connection
        self.client = WorkerClient(self.outbox)
        self.functions: dict[str, Any] = {}
        self.actor: Any = None
        self.actor_failure: str | None = None  # why the actor's __init__ failed
        self.work: queue.Queue[messages.Work | None] = queue.Queue()
        self.pool: ThreadPoolExecutor | None = None

    def serve(self) -> None:
        reader = threading.Thread(target=self._read, name="runenv-reader", daemon=True)
        reader.start()
        while True:
            try:
                message = self.work.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                self.outbox.flush()  # handles dropped while idle reach the driver
                continue
            if message is None:
                break
            if self.pool is not None and isinstance(message, messages.RunActorTask):
                self.pool.submit(self._run, message)
            else:
                self._run(message)

    def _read(self) -> None:
        try:
            while True:
                message = self.connection.receive()
                match message:
                    case messages.Reply(request_id, ok, payload):
                        self.client.resolve(request_id, ok, payload)
                    case messages.Define(function_id, pickled):
                        self.functions[function_id] = pickled
                    case messages.Forget(function_id):
                        self.functions.pop(function_id, None)
                    case messages.Init(identity):
                        self._start(identity)
                    case messages.Exit():
                        break
                    case _:
                        self.work.put(message)
        except (EOFError, OSError):
            pass  # the driver is gone: so is this worker
        except Exception as error:  # a message that cannot be read: say so, end the worker
            print(
                f"runenv worker: cannot read a message from the driver: {error!r}", file=sys.stderr
            )
        self.work.put(None)

    def _start(self, identity: dict[str, Any]) -> None:
        self.client.identity = identity
        concurrency = int(identity.get("max_concurrency") or 1)
        if concurrency > 1:
            self.pool = ThreadPoolExecutor(concurrency, "runenv-actor")

    def _run(self, message: messages.Work) -> None:
        task_id = message.task_id
        self.client.local.task_id = task_id
        outcome: Any = None
        try:
            outcome = self._call(message)
            reply: messages.Done | messages.Failed = messages.Done(task_id, to_blob(outcome))
        except BaseException as error:  # everything the user's code raises goes back
            outcome = error
            reply = messages.Failed(task_id, RemoteFailure.capture(error))
        finally:
            self.client.local.task_id = None
        # The result (or the error) is kept until it is sent: the handles in it must still be
        # held by this worker when the driver learns that the value contains them.
        self.outbox.send(reply)
        del outcome

    def _call(self, message: messages.Work) -> Any:
        match message:
            case messages.RunTask(_, function_id, args, kwargs):
                return self._call_function(function_id, args, kwargs)
            case messages.CreateActor(_, class_id, args, kwargs):
                self.actor = self._create_actor(class_id, args, kwargs)
                return None
            case messages.RunActorTask(_, method, args, kwargs):
                return self._call_method(method, args, kwargs)

    def _create_actor(self, class_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        try:
            return self._call_function(class_id, args, kwargs)
        except BaseException as error:
            self.actor_failure = f"its __init__ raised {type(error).__name__}: {error}"
            raise

    def _call_method(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if self.actor_failure is not None:
            raise ActorDiedError(f"the actor died: {self.actor_failure}")
        return getattr(self.actor, name)(*_values(args), **_kw(kwargs))

    def _call_function(self, function_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        target = self.functions[function_id]
        if isinstance(target, bytes):
            target = self.functions[function_id] = _loads_function(target)
        return target(*_values(args), **_kw(kwargs))


def _loads_function(pickled: bytes) -> Any:
    import pickle

    return pickle.loads(pickled)


def _values(args: Sequence[Any]) -> list[Any]:
    return [arg.value() if isinstance(arg, Blob) else arg for arg in args]


def _kw(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.value() if isinstance(value, Blob) else value for name, value in kwargs.items()
    }


class WorkerClient:
    """The engine inside a worker: each call is a request to the driver."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.identity: dict[str, Any] = {}
        self.local = threading.local()
        self._counter = itertools.count()
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._defined: set[str] = set()

    def resolve(self, request_id: int, ok: bool, payload: Any) -> None:
        with self._lock:
            future = self._pending.pop(request_id)
        if ok:
            future.set_result(payload)
        elif isinstance(payload, tuple):  # a failed object: (failure, where it came from)
            failure, where = payload
            error = failure.to_exception(where) if isinstance(failure, RemoteFailure) else failure
            future.set_exception(error)
        else:
            future.set_exception(payload)

    def _request(self, call: messages.Call) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            request_id = next(self._counter)
            self._pending[request_id] = future
        caller = {"task_id": getattr(self.local, "task_id", None), "cwd": os.getcwd()}
        self.outbox.send(messages.Request(request_id, caller, call))
        return future.result()

    def _submit(self, spec: FunctionSpec, make: Callable[[FunctionSpec], messages.Call]) -> str:
        """Send the spec with its pickle the first time, by id afterwards; once more with the
        pickle if the driver has forgotten it (it keeps a bounded number)."""
        if spec.id in self._defined:
            try:
                return str(self._request(make(FunctionSpec(spec.id, spec.name, b"", spec.methods))))
            except UnknownFunctionError:
                pass
        self._defined.add(spec.id)
        return str(self._request(make(spec)))

    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> str:
        packed = pack_arguments(args, kwargs)
        return self._submit(function, lambda spec: messages.SubmitTask(spec, *packed, options))

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> str:
        packed = pack_arguments(args, kwargs)
        return self._submit(cls, lambda spec: messages.CreateActorCall(spec, *packed, options))

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> str:
        packed = pack_arguments(args, kwargs)
        return str(self._request(messages.SubmitActorTask(actor_id, method, *packed)))

    def get(self, ids: Sequence[str], timeout: float | None) -> list[Any]:
        blobs = self._request(messages.GetObjects(list(ids), timeout))
        return [blob.value() for blob in blobs]

    def wait(
        self, ids: Sequence[str], num_returns: int, timeout: float | None
    ) -> tuple[list[str], list[str]]:
        ready, pending = self._request(messages.WaitObjects(list(ids), num_returns, timeout))
        return list(ready), list(pending)

    def put(self, value: Any) -> str:
        return str(self._request(messages.PutObject(to_blob(value))))

    def get_actor(self, name: str) -> ActorHandle:
        handle: ActorHandle = self._request(messages.GetActor(name))
        return handle

    def kill(self, actor_id: str) -> None:
        self._request(messages.KillActor(actor_id))

    def runtime_context(self) -> dict[str, Any]:
        return {**self.identity, "task_id": getattr(self.local, "task_id", None)}

    def shutdown(self) -> None:
        raise RunenvError(
            "runenv.shutdown() is for the driver, not for tasks and actors",
            hint="return from the task instead",
        )


def pack_arguments(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Top-level ObjectRefs stay refs (the driver resolves them); every other value is pickled
    here, by the caller, which has the modules to pickle it."""
    packed_args = [arg if isinstance(arg, ObjectRef) else to_blob(arg) for arg in args]
    packed_kwargs = {
        name: value if isinstance(value, ObjectRef) else to_blob(value)
        for name, value in kwargs.items()
    }
    return packed_args, packed_kwargs


if __name__ == "__main__":  # pragma: no cover - started through the driver's BOOTSTRAP
    main(int(sys.argv[1]))
