"""The embedded engine: tasks and actors in worker processes on this machine.

It is wired from parts with one concern each — the object table (:mod:`.objects`), the CPU
ledger (:mod:`.cpus`), the env registry (:mod:`.envs`), the worker pool (:mod:`.pool`) — and
holds the scheduling between them. One scheduler thread hands out work; one reader thread per
worker takes its messages. All state is guarded by one lock. Values stay serialized
(:class:`Blob`) and are deserialized only by whoever ``get``s them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runenv import settings
from runenv.cache import ResourceCache
from runenv.core import messages
from runenv.core.refs import ACTOR_PREFIX, ActorHandle, LocalCounts
from runenv.core.runtime import CallOptions, FunctionSpec
from runenv.core.serialization import Blob, to_blob
from runenv.core.worker import pack_arguments
from runenv.engine.actors import Actor
from runenv.engine.cpus import CpuLedger
from runenv.engine.early import FirstWorker
from runenv.engine.envs import EnvRegistry, EnvState
from runenv.engine.objects import DRIVER, Failure, ObjectTable, StoredObject
from runenv.engine.pool import WorkerPool
from runenv.engine.requests import answer
from runenv.engine.tasks import Task, describe, exception_of, setup_error, start_error
from runenv.engine.workers import Spawned, WorkerProcess, bootstrap_directory, stop_workers
from runenv.errors import (
    ActorDiedError,
    GetTimeoutError,
    RunenvError,
    UnknownFunctionError,
    UsageError,
    WorkerCrashedError,
)

if TYPE_CHECKING:
    from runenv.spec import RuntimeEnv

logger = logging.getLogger(__name__)
DEFAULT_MAX_RETRIES = 3  # for a worker that dies mid-task, as Ray's default
MAX_FUNCTIONS = 1024  # function pickles kept for workers that send them by id
WORKER_FUNCTIONS = 256  # functions a worker keeps loaded; it is told to forget older ones


class LocalEngine:
    """The driver-side engine behind ``runenv.init()``."""

    def __init__(
        self, runtime_env: Any = None, num_cpus: int | None = None, first: FirstWorker | None = None
    ) -> None:
        # A job's driver (run by `runenv job submit`) gets its job id and env from its
        # supervisor, as Ray hands them down: the job env is the parent of all its work.
        self.job_id = os.environ.get(settings.JOB_ID_VARIABLE) or uuid.uuid4().hex[:16]
        inherited = os.environ.get(settings.JOB_ENV_VARIABLE)
        if runtime_env is None and inherited:
            runtime_env = json.loads(inherited)
        self.job_env = _as_env(runtime_env, Path.cwd()) if runtime_env else None
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._counts = LocalCounts()  # the driver's own handles
        self.objects = ObjectTable()
        self.cpus = CpuLedger(float(num_cpus or os.cpu_count() or 1))
        self.envs = EnvRegistry(self._notify, self._lock)
        if first is None:
            bootstrap, self._bootstrap_lease = bootstrap_directory(ResourceCache())
        else:  # started by the API before it imported the engine: see runenv.engine.early
            bootstrap, self._bootstrap_lease = first.bootstrap, first.lease
        self._first = first
        idle = settings.worker_idle_seconds()
        self.pool = WorkerPool(bootstrap, self._on_message, self._on_exit, idle, self.job_id)
        # Waiting tasks: those that need CPUs, and those that need none (they run even when
        # every CPU is taken, as in Ray, so they are kept apart from the scan that stops then).
        self._pending: deque[Task] = deque()
        self._pending_free: deque[Task] = deque()
        self._actors: dict[str, Actor] = {}
        self._named: dict[str, str] = {}
        self._functions: OrderedDict[str, FunctionSpec] = OrderedDict()
        self._closed = False
        with self._lock:
            self._job_state = self.envs.acquire(self.job_env)  # held for the engine's life
        self._prestart = True  # one worker of the job env, started ahead of the first task
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="runenv-scheduler", daemon=True
        )
        self._scheduler.start()
        atexit.register(self.shutdown)
        if self.job_env is not None and self.job_env.config.eager_install:
            try:  # set the job env up now, not at the first task
                self._wait_env(self._job_state)
            except BaseException:
                self.shutdown()
                raise

    # --- the Engine protocol -----------------------------------------------------------------

    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self.add_task(function, packed_args, packed_kwargs, options, None, None)

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self.add_actor(cls, packed_args, packed_kwargs, options, None, None)

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> str:
        packed_args, packed_kwargs = pack_arguments(args, kwargs)
        return self.add_actor_task(actor_id, method, packed_args, packed_kwargs, None)

    def get(self, ids: Sequence[str], timeout: float | None) -> list[Any]:
        values = []
        for item in self.wait_ready(ids, timeout):
            if item.failure is not None:
                raise exception_of(item.failure, item.where)
            assert item.blob is not None
            values.append(item.blob.value())
        return values

    def wait(
        self, ids: Sequence[str], num_returns: int, timeout: float | None
    ) -> tuple[list[str], list[str]]:
        deadline = _deadline(timeout)
        with self.changed:
            self._drain_handles()
            while True:
                ready = [i for i in ids if self.objects.get(i).ready][:num_returns]
                if len(ready) >= num_returns or _expired(deadline):
                    chosen = set(ready)
                    return ready, [i for i in ids if i not in chosen]
                self.changed.wait(_remaining(deadline))

    def put(self, value: Any) -> str:
        return self.store_blob(to_blob(value), None)

    def get_actor(self, name: str) -> ActorHandle:
        with self._lock:
            self._drain_handles()  # as every call does: what the driver let go counts first
            actor_id = self._named.get(name)
            if actor_id is None:
                raise UsageError(
                    f"no actor named {name!r}",
                    hint="create it with Cls.options(name=...).remote() first; "
                    "a killed or dead actor's name is free again",
                )
            actor = self._actors[actor_id]
            return ActorHandle(actor.id, actor.class_name, actor.methods)

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
            "runtime_env": self._job_state.as_dict(),
        }

    def shutdown(self) -> None:
        with self.changed:
            if self._closed:
                return
            self._closed = True
            # Nobody waits for ever on work that will never run.
            self.objects.fail_unfinished(_shut_down_error)
            workers = self.pool.drain()
            self.changed.notify_all()
        stop_workers(workers)
        self._scheduler.join()
        if self._first is not None:
            self._first.discard()  # never adopted
        with self._lock:
            self.envs.close()
            self._pending.clear()
            self._pending_free.clear()
            self._actors.clear()
            self._named.clear()
            self._functions.clear()
        if self._bootstrap_lease is not None:
            self._bootstrap_lease.release()
        atexit.unregister(self.shutdown)

    def stats(self) -> dict[str, int]:
        """The size of each table: what a long-running driver must not let grow."""
        with self._lock:
            self._drain_handles()
            return {
                "objects": len(self.objects),
                "actors": len(self._actors),
                "envs": len(self.envs),
                "workers": len(self.pool),
                "functions": len(self._functions),
                "pending": len(self._pending) + len(self._pending_free),
            }

    # --- submitting ------------------------------------------------------------------------

    def add_task(
        self,
        function: FunctionSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
        parent: EnvState | None,
        base_dir: Path | None,  # what relative paths are relative to (None: our cwd)
        holder: str | None = None,
    ) -> str:
        _refuse_resources(options)
        num_cpus = 1.0 if options.num_cpus is None else float(options.num_cpus)
        if num_cpus > self.cpus.total:
            raise UsageError(
                f"num_cpus={num_cpus:g} is more than this engine has ({self.cpus.total:g}): "
                "the task could never run",
                hint="lower num_cpus, or runenv.init(num_cpus=...) with more",
            )
        env = self._child_env(options.runtime_env, parent, base_dir)
        with self.changed:
            self._check_open(holder)
            self._drain_handles()
            function = self._remember(function)
            task = Task.new(
                messages.RunTask,
                f"task {function.name}",
                self.envs.acquire(env),
                args,
                kwargs,
                function=function,
                num_cpus=num_cpus,
                retries_left=_retries(options),
                max_calls=options.max_calls,
            )
            self.objects.create(task.id, task.where, holder)
            self._queue_of(task).append(task)
            self.changed.notify_all()
        return task.id

    def add_actor(
        self,
        cls: FunctionSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
        parent: EnvState | None,
        base_dir: Path | None,  # what relative paths are relative to (None: our cwd)
        holder: str | None = None,
    ) -> str:
        _refuse_resources(options)
        env = self._child_env(options.runtime_env, parent, base_dir)
        with self.changed:
            self._check_open(holder)
            self._drain_handles()
            if options.name is not None and options.name in self._named:
                raise UsageError(
                    f"an actor named {options.name!r} already exists",
                    hint="use runenv.get_actor(name), or pick another name",
                )
            cls = self._remember(cls)
            actor = Actor.new(cls, options, self.envs.acquire(env))
            if holder is not None:
                actor.holders.add(holder)
            create = Task.new(
                messages.CreateActor,
                f"actor {cls.name}",
                actor.env,
                args,
                kwargs,
                function=cls,
                actor_id=actor.id,
            )
            actor.queue.append(create)  # its outcome is the actor's, not an object's
            self._actors[actor.id] = actor
            if actor.name is not None:
                self._named[actor.name] = actor.id
            self.changed.notify_all()
        return actor.id

    def add_actor_task(
        self,
        actor_id: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        holder: str | None,
    ) -> str:
        with self.changed:
            self._check_open(holder)
            self._drain_handles()
            actor = self._actors.get(actor_id)
            if actor is None:
                raise RunenvError(
                    f"unknown actor {actor_id}",
                    hint="actor handles do not survive runenv.shutdown()",
                )
            task = Task.new(
                messages.RunActorTask,
                f"actor {actor.class_name}.{method}",
                actor.env,
                args,
                kwargs,
                method=method,
                actor_id=actor_id,
            )
            self.objects.create(task.id, task.where, holder)
            if actor.dead is not None:
                self._fail_task(task, ActorDiedError(f"{task.where}: the actor died: {actor.dead}"))
            else:
                actor.queue.append(task)
                self.changed.notify_all()
        return task.id

    def store_blob(self, blob: Blob, holder: str | None) -> str:
        object_id = uuid.uuid4().hex
        with self.changed:
            self._check_open(holder)
            self._drain_handles()
            self.objects.create(object_id, "put", holder)
            self.objects.fulfil(object_id, blob)
            self.changed.notify_all()
        return object_id

    def _remember(self, spec: FunctionSpec) -> FunctionSpec:
        if spec.pickled:
            self._functions[spec.id] = spec
            self._functions.move_to_end(spec.id)
            while len(self._functions) > MAX_FUNCTIONS:
                self._functions.popitem(last=False)
            return spec
        known = self._functions.get(spec.id)
        if known is None:
            raise UnknownFunctionError(f"unknown function {spec.name} ({spec.id})")
        return known

    def _child_env(
        self, requested: dict[str, Any] | None, parent: EnvState | None, base_dir: Path | None
    ) -> RuntimeEnv | None:
        parent_env = parent.env if parent is not None else self.job_env
        if not requested:
            return parent_env
        from runenv.spec import merge

        child = _as_env(requested, base_dir or Path.cwd())
        env = merge(parent_env, child) if parent_env is not None else child
        return None if env.is_empty() else env

    # --- envs ------------------------------------------------------------------------------

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _wait_env(self, state: EnvState) -> None:
        with self.changed:
            while not state.settled:
                self.changed.wait()
        if state.error is not None:
            raise state.error

    # --- handles ---------------------------------------------------------------------------

    def _drain_handles(self) -> None:
        """Apply what the driver's own handles did since the last call (lock held). Done before
        a worker's changes too: a pin the driver just took must count before a worker lets go."""
        if self._closed:
            return  # the handles' events may be a newer engine's by now: leave them to it
        while changes := self._counts.drain():
            self._apply_holds(DRIVER, changes)

    def _worker_holds(self, worker_id: str, changes: list[tuple[str, int]]) -> None:
        self._drain_handles()
        self._apply_holds(worker_id, changes)
        self._drain_handles()  # what the freed objects contained

    def _apply_holds(self, holder: str, changes: list[tuple[str, int]]) -> None:
        for key, delta in changes:
            if key.startswith(ACTOR_PREFIX):
                actor = self._actors.get(key.removeprefix(ACTOR_PREFIX))
                if actor is not None:
                    self._hold_actor(actor, holder, delta)
            elif delta > 0:
                self.objects.hold(key, holder)
            else:
                self.objects.release(key, holder)

    def _hold_actor(self, actor: Actor, holder: str, delta: int) -> None:
        if delta > 0:
            actor.holders.add(holder)
            return
        actor.holders.discard(holder)
        if actor.holders:
            return
        actor.unreferenced = True
        if actor.dead is not None:
            self._forget_actor(actor)
        else:  # an unnamed one stops once its queued calls are done
            self.changed.notify_all()

    # --- scheduling ------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        with self.changed:
            while not self._closed:
                try:
                    self._drain_handles()
                    self._prestart_worker()
                    self._dispatch_tasks()
                    self._dispatch_actors()
                    self.pool.retire_idle()
                except Exception:  # a bug must not stop all scheduling: say it, go on
                    logger.exception("runenv scheduler error")
                self.changed.wait(min(1.0, self.pool.idle_seconds))

    def _prestart_worker(self) -> None:
        state = self._job_state
        if self._first is not None and self._first.spawned is not None:  # already running
            spawned, self._first.spawned, self._prestart = self._first.spawned, None, False
            self.pool.give_back(self._start_worker(state, spawned=spawned))
        elif self._prestart and state.settled:
            self._prestart = False
            if state.context is not None and not self._pending and not self._pending_free:
                self.pool.give_back(self._start_worker(state))

    def _dispatch_tasks(self) -> None:
        self._pending_free = self._dispatch_queue(self._pending_free, stop_when_full=False)
        self._pending = self._dispatch_queue(self._pending, stop_when_full=True)

    def _dispatch_queue(self, queue: deque[Task], stop_when_full: bool) -> deque[Task]:
        """Start what can start; the tasks that still wait, in order."""
        waiting: deque[Task] = deque()
        while queue:
            if stop_when_full and self.cpus.exhausted():  # nothing more can start
                waiting.extend(queue)
                break
            task = queue.popleft()
            try:
                started = self._try_dispatch(task)
            except Exception as error:  # e.g. the env's interpreter cannot start
                self._fail_task(task, start_error(task, error))
                continue
            if not started:
                waiting.append(task)
        return waiting

    def _queue_of(self, task: Task) -> deque[Task]:
        return self._pending if task.num_cpus > 0 else self._pending_free

    def _try_dispatch(self, task: Task) -> bool:
        """Start ``task`` now if it can; True when it was started or failed for good."""
        failure = self._failed_dependency(task)
        if failure is not None:
            self._fail_task(task, failure)
            return True
        if not self._dependencies_ready(task) or not task.env.settled:
            return False
        if task.env.error is not None:
            self._fail_task(task, setup_error(task, task.env.error))
            return True
        if not self.cpus.take(task.id, task.num_cpus):
            return False
        worker = self.pool.take_idle(task.env) or self._start_worker(task.env)
        if not self._send(worker, task):
            self.cpus.give(task.id)
            return False
        worker.task = task
        return True

    def _dispatch_actors(self) -> None:
        for actor in list(self._actors.values()):
            while actor.queue and actor.dead is None:
                if not self._dispatch_actor_call(actor):
                    break
            if actor.idle_out_of_scope():
                self._actor_died(actor, "no handle to it is left")

    def _dispatch_actor_call(self, actor: Actor) -> bool:
        """Send the actor its next call; False when it has to wait."""
        task = actor.queue[0]
        failure = self._failed_dependency(task)
        if failure is not None and task.kind is messages.CreateActor:
            self._actor_died(actor, f"an argument of its constructor failed: {describe(failure)}")
            return False
        if failure is not None:
            actor.queue.popleft()
            self._fail_task(task, failure)
            return True
        if not self._dependencies_ready(task) or not actor.env.settled:
            return False
        if actor.env.error is not None:
            self._actor_died(actor, str(setup_error(task, actor.env.error)))
            return False
        if actor.worker is None:
            if not self.cpus.take(actor.key, actor.num_cpus):
                return False  # waits for CPUs like a task would
            try:
                actor.worker = self._start_worker(actor.env, actor)
            except Exception as error:
                self._actor_died(actor, str(start_error(task, error)))
                return False
        actor.queue.popleft()
        actor.in_flight[task.id] = task
        self._send(actor.worker, task)
        return True

    def _send(self, worker: WorkerProcess, task: Task) -> bool:
        function = task.function
        if function is not None and function.id not in worker.defined:
            worker.send(messages.Define(function.id, function.pickled))
            worker.defined[function.id] = None
            if len(worker.defined) > WORKER_FUNCTIONS:  # a long-lived worker must not grow
                forgotten, _ = worker.defined.popitem(last=False)
                worker.send(messages.Forget(forgotten))
        elif function is not None:
            worker.defined.move_to_end(function.id)
        resolved = {i: self.objects.get(i).blob for i in task.needs}
        return worker.send(task.message(resolved))

    def _start_worker(
        self, env: EnvState, actor: Actor | None = None, spawned: Spawned | None = None
    ) -> WorkerProcess:
        if actor is None:
            worker = self.pool.start(env, spawned=spawned)
        else:
            worker = self.pool.start(env, actor.id, actor.max_concurrency)
        env.users += 1  # the worker's own use, given back when it exits
        return worker

    # --- objects ---------------------------------------------------------------------------

    def _dependencies_ready(self, task: Task) -> bool:
        return all(self.objects.get(i).ready for i in task.needs)

    def _failed_dependency(self, task: Task) -> Failure | None:
        for object_id in task.needs:
            found = self.objects.find(object_id)
            if found is None:  # a ref kept from before shutdown() and init()
                return RunenvError(
                    f"{task.where}: an argument is an ObjectRef this runenv session never made",
                    hint="refs do not survive runenv.shutdown(); pass values, or new refs",
                )
            if found.failure is not None:
                return found.failure
        return None

    def wait_ready(self, ids: Sequence[str], timeout: float | None) -> list[StoredObject]:
        deadline = _deadline(timeout)
        with self.changed:
            self._drain_handles()
            found = [self.objects.get(i) for i in ids]  # held by the caller: they stay
            ready = 0  # found[:ready] are ready, and stay so: none is looked at twice
            while True:
                while ready < len(found) and found[ready].ready:
                    ready += 1
                if ready == len(found):
                    return found
                if _expired(deadline):
                    raise GetTimeoutError(
                        f"get timed out after {timeout} s", hint="raise the timeout, or use wait()"
                    )
                self.changed.wait(_remaining(deadline))

    def _fail_task(self, task: Task, failure: Failure) -> None:
        self.objects.fail(task.id, failure)
        self._finish(task)
        self.changed.notify_all()

    def _finish(self, task: Task) -> None:
        """A task is over (done or failed for good): what it held goes."""
        if task.finish() and task.counts_env_use:
            self.envs.release(task.env)

    # --- worker messages (reader threads) --------------------------------------------------

    def _on_message(self, worker: WorkerProcess, message: Any) -> None:
        match message:
            case messages.Request():
                # A nested get may wait for long: each request gets its own thread, so any
                # depth of nesting can wait at once without starving the others.
                with self.changed:  # the task it runs: the one that waits, whatever thread asks
                    task_id = worker.task.id if worker.task is not None else None
                thread = threading.Thread(target=answer, args=(self, worker, message, task_id))
                thread.daemon = True
                thread.start()
            case messages.Holds(changes):
                with self.changed:
                    self._worker_holds(worker.worker_id, changes)
            case messages.Done(task_id, result):
                with self.changed:
                    self.objects.fulfil(task_id, result)
                    self._completed(worker, task_id, None)
            case messages.Failed(task_id, failure):
                with self.changed:
                    self.objects.fail(task_id, failure)
                    self._completed(worker, task_id, failure)

    def _completed(self, worker: WorkerProcess, task_id: str, failure: Failure | None) -> None:
        if worker.actor_id is not None:
            self._actor_reply(worker.actor_id, task_id, failure)
        else:
            self._task_finished(worker)
        self.changed.notify_all()

    def _task_finished(self, worker: WorkerProcess) -> None:
        task: Task | None = worker.task
        worker.task = None
        if task is None:
            return
        self.cpus.give(task.id)
        self._finish(task)
        calls = worker.calls[task.function_id] = worker.calls.get(task.function_id, 0) + 1
        if task.max_calls is not None and calls >= task.max_calls:  # per function, as Ray
            self.pool.retire(worker)
        elif not self._closed:
            self.pool.give_back(worker)

    def _actor_reply(self, actor_id: str, task_id: str, failure: Failure | None) -> None:
        actor = self._actors.get(actor_id)
        if actor is None:
            return
        task = actor.in_flight.pop(task_id, None)
        if task is None:
            return
        self._finish(task)
        if task.kind is messages.CreateActor and failure is not None:
            error = exception_of(failure, task.where)
            self._actor_died(actor, f"its __init__ raised: {error}")
            if actor.worker is not None:
                actor.worker.process.kill()

    def _on_exit(self, worker: WorkerProcess) -> None:
        with self.changed:
            if self.pool.forget(worker) and worker.env is not None:
                self.envs.release(worker.env)
            self._drain_handles()
            self.objects.release_all(worker.worker_id)
            for actor in list(self._actors.values()):
                if worker.worker_id in actor.holders:
                    self._hold_actor(actor, worker.worker_id, -1)
            self._drain_handles()
            code = worker.process.returncode
            own_actor = self._actors.get(worker.actor_id or "")
            if own_actor is not None and own_actor.dead is None:
                self._actor_died(own_actor, f"its process exited (exit code {code})")
            task: Task | None = worker.task
            worker.task = None
            if task is not None and not self._closed:
                self._worker_lost(task, code)
            self.changed.notify_all()

    def _worker_lost(self, task: Task, code: int | None) -> None:
        self.cpus.give(task.id)
        if task.retries_left > 0:
            task.retries_left -= 1
            self._queue_of(task).appendleft(task)
            return
        self._fail_task(
            task,
            WorkerCrashedError(
                f"{task.where}: the worker running it died (exit code {code})",
                hint="set max_retries to retry it; look for os._exit, signals, native crashes",
            ),
        )

    def _actor_died(self, actor: Actor, reason: str) -> None:
        if actor.dead is not None:
            return
        actor.dead = reason
        self.cpus.give(actor.key)
        if actor.name is not None and self._named.get(actor.name) == actor.id:
            del self._named[actor.name]
        for task in [*actor.in_flight.values(), *actor.queue]:
            self._fail_task(task, ActorDiedError(f"{task.where}: the actor died: {reason}"))
        actor.in_flight.clear()
        actor.queue.clear()
        if actor.worker is not None:
            self.pool.retire(actor.worker)
        self.envs.release(actor.env)
        if actor.unreferenced and not actor.holders:
            self._forget_actor(actor)
        self.changed.notify_all()

    def _forget_actor(self, actor: Actor) -> None:
        self._actors.pop(actor.id, None)

    def _check_open(self, holder: str | None = None) -> None:
        """Refuse new work after shutdown, and from a worker that has exited (a request it sent
        before dying may be answered after its exit was handled: it would hold for ever)."""
        if self._closed:
            raise RunenvError(
                "runenv has been shut down", hint="call runenv.init() again to start it"
            )
        if holder is not None and self.pool.find(holder) is None:
            raise RunenvError(f"{holder} has exited", hint="its requests are not carried out")


def _shut_down_error(where: str) -> RunenvError:
    return RunenvError(
        f"{where}: runenv was shut down before it finished",
        hint="call runenv.get() before runenv.shutdown()",
    )


def _retries(options: CallOptions) -> int:
    return DEFAULT_MAX_RETRIES if options.max_retries is None else options.max_retries


def _refuse_resources(options: CallOptions) -> None:
    if options.resources:
        raise UsageError(
            f"resources={options.resources!r}: this machine offers no custom resources, so "
            "the work could never run",
            hint="custom resources exist on a Ray cluster (runenv.init(address=...)); "
            "use num_cpus here",
        )


def _as_env(value: Any, base_dir: Path) -> RuntimeEnv:
    from runenv.spec import RuntimeEnv

    if isinstance(value, RuntimeEnv):
        return value
    return RuntimeEnv.from_dict(value, base_dir=base_dir)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
