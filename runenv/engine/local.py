"""The embedded engine: tasks and actors in worker processes on this machine.

One scheduler thread hands out work; one reader thread per worker takes its replies. All state
is guarded by one lock. Workers are pooled by env key and reused; each actor has its own worker.
Values are kept serialized (:class:`Blob`) and deserialized only by whoever ``get``s them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runenv import settings
from runenv.cache import ResourceCache
from runenv.context import Context
from runenv.core.refs import ActorHandle, ObjectRef
from runenv.core.runtime import CallOptions, FunctionSpec
from runenv.core.serialization import Blob, RemoteFailure, to_blob
from runenv.core.worker import pack_arguments
from runenv.engine.workers import (
    WorkerProcess,
    bootstrap_directory,
    start_worker,
    stop_workers,
)
from runenv.errors import (
    ActorDiedError,
    EnvSetupError,
    GetTimeoutError,
    RunenvError,
    RuntimeEnvSetupError,
    WorkerCrashedError,
)
from runenv.materialize import materialize
from runenv.spec import RuntimeEnv, merge

logger = logging.getLogger(__name__)
DEFAULT_MAX_RETRIES = 3  # for a worker that dies mid-task, as Ray's default

Failure = RemoteFailure | RunenvError


@dataclass
class _Object:
    blob: Blob | None = None
    failure: Failure | None = None
    where: str = ""

    @property
    def ready(self) -> bool:
        return self.blob is not None or self.failure is not None


@dataclass
class _EnvState:
    env: RuntimeEnv
    context: Context | None = None
    error: RunenvError | None = None


@dataclass
class _Task:
    id: str  # also the id of its result object
    kind: str  # "task", "actor_create", "actor_task"
    where: str  # for error messages: "task f", "actor Counter.incr"
    env: _EnvState
    args: list[Any]
    kwargs: dict[str, Any]
    function: FunctionSpec | None = None
    method: str | None = None
    actor_id: str | None = None
    num_cpus: float = 1.0
    retries_left: int = 0
    max_calls: int | None = None
    cpus_held: bool = False


@dataclass
class _Actor:
    id: str
    name: str | None
    handle: ActorHandle
    env: _EnvState
    max_concurrency: int
    num_cpus: float
    queue: deque[_Task] = field(default_factory=deque)
    worker: WorkerProcess | None = None
    dead: str | None = None  # why it died
    cpus_held: bool = False  # its num_cpus, taken while its worker lives (Ray's semantics)
    in_flight: dict[str, _Task] = field(default_factory=dict)


class LocalRuntime:
    """The driver-side runtime behind ``runenv.init()``."""

    def __init__(self, runtime_env: Any = None, num_cpus: int | None = None) -> None:
        # A job's driver (run by `runenv job submit`) gets its job id and env from its
        # supervisor, as Ray hands them down: the job env is the parent of all its work.
        self.job_id = os.environ.get("RUNENV_JOB_ID") or uuid.uuid4().hex[:16]
        inherited = os.environ.get("RUNENV_JOB_RUNTIME_ENV")
        if runtime_env is None and inherited:
            runtime_env = json.loads(inherited)
        self.job_env = _as_env(runtime_env, Path.cwd()) if runtime_env else RuntimeEnv()
        self.total_cpus = float(num_cpus or os.cpu_count() or 1)
        self.free_cpus = self.total_cpus
        self.idle_seconds = settings.worker_idle_seconds()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[str, _Object] = {}
        self._pending: deque[_Task] = deque()
        self._functions: dict[str, FunctionSpec] = {}
        self._envs: dict[str, _EnvState] = {}
        self._idle: dict[str, list[WorkerProcess]] = {}
        self._workers: dict[str, WorkerProcess] = {}
        self._running: dict[str, _Task] = {}  # by worker id
        self._actors: dict[str, _Actor] = {}
        self._named: dict[str, str] = {}
        self._worker_env: dict[str, _EnvState] = {}  # by worker id, for nested work
        self._closed = False
        self._cache = ResourceCache()
        self._bootstrap, self._bootstrap_lease = bootstrap_directory(self._cache)
        self._setups = ThreadPoolExecutor(4, thread_name_prefix="runenv-setup")
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="runenv-scheduler", daemon=True
        )
        self._scheduler.start()
        atexit.register(self.shutdown)
        if not self.job_env.is_empty() and self.job_env.config.eager_install:
            try:  # set the job env up now, not at the first task
                self._wait_env(self._env_state(self.job_env))
            except BaseException:
                self.shutdown()
                raise

    # --- the Runtime protocol -----------------------------------------------------------

    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self._submit_task(function, packed_args, packed_kwargs, options, None, Path.cwd())

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self._create_actor(cls, packed_args, packed_kwargs, options, None, Path.cwd())

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self._submit_actor_task(actor_id, method, packed_args, packed_kwargs)

    def get(self, ids: Sequence[str], timeout: float | None) -> list[Any]:
        values = []
        for item in self._wait_ready(ids, timeout):
            if item.failure is not None:
                raise _exception(item.failure, item.where)
            assert item.blob is not None
            values.append(item.blob.value())
        return values

    def wait(
        self, ids: Sequence[str], num_returns: int, timeout: float | None
    ) -> tuple[list[str], list[str]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                ready = [i for i in ids if self._object(i).ready]
                if len(ready) >= num_returns or _expired(deadline):
                    ready = ready[:num_returns] if len(ready) > num_returns else ready
                    chosen = set(ready)
                    return ready, [i for i in ids if i not in chosen]
                self._changed.wait(_remaining(deadline))

    def put(self, value: Any) -> str:
        return self._put_blob(to_blob(value))

    def get_actor(self, name: str) -> ActorHandle:
        with self._lock:
            actor_id = self._named.get(name)
            if actor_id is None:
                raise ValueError(f"no actor named {name!r}")
            return self._actors[actor_id].handle

    def kill(self, actor_id: str) -> None:
        with self._lock:
            actor = self._actors.get(actor_id)
            worker = actor.worker if actor else None
        if actor is not None:
            self._actor_died(actor, "the actor was killed with runenv.kill()")
        if worker is not None:
            worker.process.kill()
            worker.process.wait()  # gone when kill() returns

    def runtime_context(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "task_id": None,
            "actor_id": None,
            "runtime_env": self.job_env.to_dict(),
        }

    def shutdown(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers.values())
            for item in self._objects.values():
                if not item.ready:  # nobody waits for ever on work that will never run
                    item.failure = RunenvError(
                        f"{item.where}: runenv was shut down before it finished",
                        hint="call runenv.get() before runenv.shutdown()",
                    )
            self._changed.notify_all()
        stop_workers(workers)
        self._setups.shutdown(wait=False, cancel_futures=True)
        self._bootstrap_lease.release()
        atexit.unregister(self.shutdown)

    # --- submitting -----------------------------------------------------------------------

    def _submit_task(
        self,
        function: FunctionSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
        parent: _EnvState | None,
        base_dir: Path,
    ) -> str:
        if options.num_cpus is not None and options.num_cpus > self.total_cpus:
            raise ValueError(
                f"num_cpus={options.num_cpus} is more than this engine has ({self.total_cpus:g}): "
                "the task could never run"
            )
        env = self._child_env(options.runtime_env, parent, base_dir)
        with self._changed:
            self._check_open()
            function = self._remember(function)
            task = _Task(
                id=uuid.uuid4().hex,
                kind="task",
                where=f"task {function.name}",
                env=self._env_state(env),
                args=args,
                kwargs=kwargs,
                function=function,
                num_cpus=1.0 if options.num_cpus is None else float(options.num_cpus),
                retries_left=_retries(options),
                max_calls=options.max_calls,
            )
            self._objects[task.id] = _Object(where=task.where)
            self._pending.append(task)
            self._changed.notify_all()
        return task.id

    def _create_actor(
        self,
        cls: FunctionSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
        parent: _EnvState | None,
        base_dir: Path,
    ) -> str:
        env = self._child_env(options.runtime_env, parent, base_dir)
        with self._changed:
            self._check_open()
            if options.name is not None and options.name in self._named:
                raise ValueError(f"an actor named {options.name!r} already exists")
            cls = self._remember(cls)
            actor_id = uuid.uuid4().hex[:16]
            methods = cls.methods
            state = self._env_state(env)
            actor = _Actor(
                id=actor_id,
                name=options.name,
                handle=ActorHandle(actor_id, cls.name, methods),
                env=state,
                max_concurrency=options.max_concurrency or 1,
                num_cpus=0.0 if options.num_cpus is None else float(options.num_cpus),
            )
            create = _Task(
                uuid.uuid4().hex,
                "actor_create",
                f"actor {cls.name}",
                state,
                args,
                kwargs,
                function=cls,
                actor_id=actor_id,
            )
            self._objects[create.id] = _Object(where=create.where)
            actor.queue.append(create)
            self._actors[actor_id] = actor
            if options.name is not None:
                self._named[options.name] = actor_id
            self._changed.notify_all()
        return actor_id

    def _submit_actor_task(
        self, actor_id: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> str:
        with self._changed:
            actor = self._actors.get(actor_id)
            if actor is None:
                raise ValueError(f"unknown actor {actor_id}")
            class_name = actor.handle._class_name
            task = _Task(
                uuid.uuid4().hex,
                "actor_task",
                f"actor {class_name}.{method}",
                actor.env,
                args,
                kwargs,
                method=method,
                actor_id=actor_id,
            )
            self._objects[task.id] = _Object(where=task.where)
            if actor.dead is not None:
                self._fail(task.id, ActorDiedError(f"{task.where}: the actor died: {actor.dead}"))
            else:
                actor.queue.append(task)
                self._changed.notify_all()
        return task.id

    def _put_blob(self, blob: Blob) -> str:
        object_id = uuid.uuid4().hex
        with self._changed:
            self._objects[object_id] = _Object(blob=blob, where="put")
            self._changed.notify_all()
        return object_id

    def _remember(self, spec: FunctionSpec) -> FunctionSpec:
        if spec.pickled:
            self._functions.setdefault(spec.id, spec)
        known = self._functions.get(spec.id)
        if known is None:
            raise RuntimeError(f"unknown function {spec.name} ({spec.id})")
        return known

    def _child_env(
        self, requested: dict[str, Any] | None, parent: _EnvState | None, base_dir: Path
    ) -> RuntimeEnv:
        parent_env = parent.env if parent is not None else self.job_env
        if not requested:
            return parent_env
        return merge(parent_env, _as_env(requested, base_dir))

    # --- envs -----------------------------------------------------------------------------

    def _env_state(self, env: RuntimeEnv) -> _EnvState:
        key = env.canonical_json()
        with self._lock:
            state = self._envs.get(key)
            if state is None:  # a new env: set it up once, in the background
                state = self._envs[key] = _EnvState(env)
                self._setups.submit(self._set_up, state)
            return state

    def _set_up(self, state: _EnvState) -> None:
        try:
            context = materialize(state.env)
            error = None
        except RunenvError as failure:
            context, error = None, failure
        except Exception as failure:  # a bug, but it must fail the tasks, not hang them
            context, error = None, RunenvError(f"internal error setting up the env: {failure!r}")
        with self._changed:
            state.context, state.error = context, error
            self._changed.notify_all()

    def _wait_env(self, state: _EnvState) -> None:
        with self._changed:
            while state.context is None and state.error is None:
                self._changed.wait()
        if state.error is not None:
            raise state.error

    # --- scheduling -----------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        with self._changed:
            while not self._closed:
                try:
                    self._dispatch_tasks()
                    self._dispatch_actors()
                    self._reap_idle_workers()
                except Exception:  # a bug must not stop all scheduling: say it, go on
                    logger.exception("runenv scheduler error")
                self._changed.wait(min(1.0, self.idle_seconds))

    def _dispatch_tasks(self) -> None:
        waiting: deque[_Task] = deque()
        while self._pending:
            if self.free_cpus <= 1e-9:  # nothing more can start: keep the rest as it is
                waiting.extend(self._pending)
                break
            task = self._pending.popleft()
            try:
                started = self._try_dispatch(task)
            except Exception as error:  # e.g. the env's interpreter cannot start
                self._fail(task.id, _start_error(task, error))
                continue
            if not started:
                waiting.append(task)
        self._pending = waiting

    def _try_dispatch(self, task: _Task) -> bool:
        """Start ``task`` now if it can; True when it was started or failed for good."""
        failure = self._failed_dependency(task)
        if failure is not None:
            self._fail(task.id, failure)
            return True
        if not self._dependencies_ready(task) or not self._env_ready(task):
            return False
        if task.env.error is not None:
            self._fail(task.id, _setup_error(task, task.env.error))
            return True
        if task.num_cpus > self.free_cpus + 1e-9:
            return False
        worker = self._idle_worker(task.env)
        if not self._send_task(worker, task):
            return False
        self.free_cpus -= task.num_cpus
        task.cpus_held = True
        return True

    def _dispatch_actors(self) -> None:
        for actor in list(self._actors.values()):
            while actor.queue and actor.dead is None:
                task = actor.queue[0]
                failure = self._failed_dependency(task)
                if failure is not None:
                    actor.queue.popleft()
                    self._fail(task.id, failure)
                    continue
                if not self._dependencies_ready(task) or not self._env_ready(task):
                    break
                if actor.env.error is not None:
                    self._actor_died(actor, str(_setup_error(task, actor.env.error)))
                    break
                if actor.worker is None:
                    if actor.num_cpus > self.free_cpus + 1e-9:
                        break  # waits for CPUs like a task would
                    self.free_cpus -= actor.num_cpus
                    actor.cpus_held = True
                    try:
                        actor.worker = self._start_worker(actor.env, actor)
                    except Exception as error:
                        self._actor_died(actor, str(_start_error(task, error)))
                        break
                actor.queue.popleft()
                actor.in_flight[task.id] = task
                self._send_task(actor.worker, task)

    def _send_task(self, worker: WorkerProcess, task: _Task) -> bool:
        function = task.function
        if function is not None and function.id not in worker.defined:
            worker.send(("define", function.id, function.pickled))
            worker.defined.add(function.id)
        args = [self._resolve(arg) for arg in task.args]
        kwargs = {name: self._resolve(value) for name, value in task.kwargs.items()}
        if task.kind == "actor_task":
            message: tuple[Any, ...] = ("actor_task", task.id, task.method, args, kwargs)
        else:
            assert function is not None
            message = (task.kind, task.id, function.id, args, kwargs)
        if not worker.send(message):
            return False
        if task.kind == "task":
            worker.task_id = task.id
            self._running[worker.worker_id] = task
        return True

    def _idle_worker(self, env: _EnvState) -> WorkerProcess:
        assert env.context is not None
        idle = self._idle.get(env.context.env_key, [])
        while idle:
            worker = idle.pop()
            if worker.alive:
                return worker
        return self._start_worker(env, None)

    def _start_worker(self, env: _EnvState, actor: _Actor | None) -> WorkerProcess:
        assert env.context is not None
        worker_id = f"worker-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            worker_id, env.context, self._bootstrap, self._on_message, self._on_exit
        )
        identity = {
            "job_id": self.job_id,
            "worker_id": worker_id,
            "actor_id": actor.id if actor else None,
            "runtime_env": env.env.to_dict(),
            "max_concurrency": actor.max_concurrency if actor else 1,
        }
        worker.send(("init", identity))
        worker.actor_id = actor.id if actor else None
        self._workers[worker_id] = worker
        self._worker_env[worker_id] = env
        return worker

    def _reap_idle_workers(self) -> None:
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            keep = [w for w in idle if w.alive and now - w.idle_since < self.idle_seconds]
            for worker in idle:
                if worker not in keep and worker.alive:
                    worker.alive = False
                    worker.send(("exit",))
            self._idle[key] = keep

    # --- objects ----------------------------------------------------------------------------

    def _object(self, object_id: str) -> _Object:
        found = self._objects.get(object_id)
        if found is None:
            raise ValueError(f"unknown object {object_id}")
        return found

    def _resolve(self, arg: Any) -> Any:
        if isinstance(arg, ObjectRef):
            blob = self._objects[arg.id].blob
            assert blob is not None
            return blob
        return arg

    def _dependencies(self, task: _Task) -> list[str]:
        values = [*task.args, *task.kwargs.values()]
        return [value.id for value in values if isinstance(value, ObjectRef)]

    def _dependencies_ready(self, task: _Task) -> bool:
        return all(self._object(i).ready for i in self._dependencies(task))

    def _failed_dependency(self, task: _Task) -> Failure | None:
        for object_id in self._dependencies(task):
            found = self._objects.get(object_id)
            if found is None:  # e.g. a ref kept from before shutdown() and init()
                return RunenvError(
                    f"{task.where}: an argument is an ObjectRef this runenv session never made",
                    hint="refs do not survive runenv.shutdown(); pass values, or new refs",
                )
            if found.failure is not None:
                return found.failure
        return None

    def _env_ready(self, task: _Task) -> bool:
        return task.env.context is not None or task.env.error is not None

    def _wait_ready(self, ids: Sequence[str], timeout: float | None) -> list[_Object]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not all(self._object(i).ready for i in ids):
                if _expired(deadline):
                    raise GetTimeoutError(
                        f"get timed out after {timeout} s", hint="raise the timeout, or use wait()"
                    )
                self._changed.wait(_remaining(deadline))
            return [self._objects[i] for i in ids]

    def _fail(self, object_id: str, failure: Failure) -> None:
        self._objects[object_id].failure = failure
        self._changed.notify_all()

    # --- worker messages (reader threads) ----------------------------------------------------

    def _on_message(self, worker: WorkerProcess, message: Any) -> None:
        kind = message[0]
        if kind == "request":
            # A nested get may wait for long: each request gets its own thread, so any depth
            # of nesting can wait at once without starving the others.
            threading.Thread(target=self._answer, args=(worker, *message[1:]), daemon=True).start()
            return
        task_id = message[1]
        with self._changed:
            item = self._objects.get(task_id)
            if item is not None and not item.ready:  # not already failed by the driver
                if kind == "done":
                    item.blob = message[2]
                else:
                    item.failure = message[2]
            if worker.actor_id is not None:
                self._actor_reply(worker.actor_id, task_id, kind)
            else:
                self._task_finished(worker)
            self._changed.notify_all()

    def _task_finished(self, worker: WorkerProcess) -> None:
        task = self._running.pop(worker.worker_id, None)
        worker.task_id = None
        if task is not None and task.cpus_held:
            self.free_cpus += task.num_cpus
        worker.calls += 1
        if task is not None and task.max_calls is not None and worker.calls >= task.max_calls:
            worker.alive = False
            worker.send(("exit",))
            return
        worker.idle_since = time.monotonic()
        self._idle.setdefault(worker.env_key, []).append(worker)

    def _actor_reply(self, actor_id: str, task_id: str, kind: str) -> None:
        actor = self._actors[actor_id]
        task = actor.in_flight.pop(task_id, None)
        if task is not None and task.kind == "actor_create" and kind == "failed":
            failure = self._objects[task_id].failure
            reason = f"its __init__ raised: {_exception(failure, task.where)}" if failure else ""
            self._actor_died(actor, reason)
            if actor.worker is not None:
                actor.worker.process.kill()

    def _on_exit(self, worker: WorkerProcess) -> None:
        with self._changed:
            self._workers.pop(worker.worker_id, None)
            self._worker_env.pop(worker.worker_id, None)
            code = worker.process.returncode
            if worker.actor_id is not None:
                actor = self._actors.get(worker.actor_id)
                if actor is not None and actor.dead is None:
                    self._actor_died(actor, f"its process exited (exit code {code})")
            task = self._running.pop(worker.worker_id, None)
            if task is not None and not self._closed:
                self._worker_lost(task, code)
            self._changed.notify_all()

    def _worker_lost(self, task: _Task, code: int | None) -> None:
        if task.cpus_held:
            self.free_cpus += task.num_cpus
            task.cpus_held = False
        if task.retries_left > 0:
            task.retries_left -= 1
            self._pending.appendleft(task)
            return
        self._fail(
            task.id,
            WorkerCrashedError(
                f"{task.where}: the worker running it died (exit code {code})",
                hint="set max_retries to retry it; look for os._exit, signals, native crashes",
            ),
        )

    def _actor_died(self, actor: _Actor, reason: str) -> None:
        with self._changed:
            if actor.dead is not None:
                return
            actor.dead = reason
            if actor.cpus_held:
                self.free_cpus += actor.num_cpus
                actor.cpus_held = False
            if actor.name is not None:
                self._named.pop(actor.name, None)
            for task in [*actor.in_flight.values(), *actor.queue]:
                item = self._objects[task.id]
                if not item.ready:
                    self._fail(task.id, ActorDiedError(f"{task.where}: the actor died: {reason}"))
            actor.in_flight.clear()
            actor.queue.clear()
            self._changed.notify_all()

    # --- requests from workers (nested work) ---------------------------------------------

    def _answer(
        self,
        worker: WorkerProcess,
        request_id: int,
        operation: str,
        caller: dict[str, Any],
        payload: tuple[Any, ...],
    ) -> None:
        try:
            result = self._handle(worker, operation, caller, payload)
            reply: tuple[Any, ...] = ("reply", request_id, True, result)
        except _FailureReply as failed:
            reply = ("reply", request_id, False, failed.failure)
        except Exception as error:
            reply = ("reply", request_id, False, error)
        worker.send(reply)

    def _handle(
        self,
        worker: WorkerProcess,
        operation: str,
        caller: dict[str, Any],
        payload: tuple[Any, ...],
    ) -> Any:
        parent = self._worker_env.get(worker.worker_id)
        base_dir = Path(caller.get("cwd") or Path.cwd())
        if operation in ("submit_task", "create_actor"):
            spec, args, kwargs, options = payload
            submit = self._submit_task if operation == "submit_task" else self._create_actor
            return submit(spec, args, kwargs, options, parent, base_dir)
        if operation == "submit_actor_task":
            return self._submit_actor_task(*payload)
        if operation in ("get", "wait"):
            with self._released_cpus(worker):
                if operation == "wait":
                    return self.wait(*payload)
                found = self._wait_ready(payload[0], payload[1])
            for item in found:
                if item.failure is not None:
                    raise _FailureReply((item.failure, item.where))
            return [item.blob for item in found]
        if operation == "put":
            return self._put_blob(payload[0])
        if operation == "get_actor":
            return self.get_actor(payload[0])
        if operation == "kill":
            return self.kill(payload[0])
        raise ValueError(f"unknown request {operation!r}")

    def _released_cpus(self, worker: WorkerProcess) -> _ReleasedCpus:
        return _ReleasedCpus(self, worker.worker_id, self._running.get(worker.worker_id))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("runenv has been shut down; call runenv.init() again")


class _ReleasedCpus:
    """A task blocked in a nested ``get`` gives its CPUs back meanwhile (as Ray does), so
    nested work cannot deadlock on a full machine."""

    def __init__(self, runtime: LocalRuntime, worker_id: str, task: _Task | None) -> None:
        self.runtime = runtime
        self.worker_id = worker_id
        self.task = task

    def __enter__(self) -> None:
        with self.runtime._changed:
            if self.task is not None and self.task.cpus_held:
                self.runtime.free_cpus += self.task.num_cpus
                self.task.cpus_held = False
                self.runtime._changed.notify_all()

    def __exit__(self, *exc: object) -> None:
        with self.runtime._changed:
            still_running = self.runtime._running.get(self.worker_id) is self.task
            if self.task is not None and still_running and not self.task.cpus_held:
                self.runtime.free_cpus -= self.task.num_cpus
                self.task.cpus_held = True


class _FailureReply(Exception):
    """A nested ``get`` of a failed object: the worker raises it as ``get`` in the driver would."""

    def __init__(self, failure: tuple[Failure, str]) -> None:
        self.failure = failure


def _exception(failure: Failure | None, where: str) -> BaseException:
    if isinstance(failure, RemoteFailure):
        return failure.to_exception(where)
    assert failure is not None
    return failure


def _setup_error(task: _Task, error: RunenvError) -> RuntimeEnvSetupError:
    if isinstance(error, RuntimeEnvSetupError):
        return error
    log_path = error.log_path if isinstance(error, EnvSetupError) else None
    return RuntimeEnvSetupError(
        f"{task.where}: runtime env setup failed: {error.message}",
        hint=error.hint,
        log_path=log_path,
    )


def _start_error(task: _Task, error: Exception) -> RunenvError:
    return RunenvError(
        f"{task.where}: could not start a worker: {error}",
        hint="check that the env's Python runs: runenv env path <env file>",
    )


def _retries(options: CallOptions) -> int:
    return DEFAULT_MAX_RETRIES if options.max_retries is None else options.max_retries


def _as_env(value: Any, base_dir: Path) -> RuntimeEnv:
    if isinstance(value, RuntimeEnv):
        return value
    return RuntimeEnv.from_dict(value, base_dir=base_dir)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
