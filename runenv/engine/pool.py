"""The worker pool: worker processes by env, started on demand, reused, retired when idle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from runenv.core import messages
from runenv.engine.envs import EnvState
from runenv.engine.workers import (
    ExitHandler,
    MessageHandler,
    Spawned,
    WorkerProcess,
    start_worker,
)


class WorkerPool:
    def __init__(
        self,
        bootstrap: Path,
        on_message: MessageHandler,
        on_exit: ExitHandler,
        idle_seconds: float,
        job_id: str,
    ) -> None:
        self._bootstrap = bootstrap
        self._on_message = on_message
        self._on_exit = on_exit
        self.idle_seconds = idle_seconds
        self._job_id = job_id
        self._workers: dict[str, WorkerProcess] = {}
        self._idle: dict[str, list[WorkerProcess]] = {}  # by env key

    def __len__(self) -> int:
        return len(self._workers)

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(list(self._workers.values()))

    def start(
        self,
        env: EnvState,
        actor_id: str | None = None,
        max_concurrency: int = 1,
        spawned: Spawned | None = None,
    ) -> WorkerProcess:
        """A new worker in ``env``'s Context (for an actor when ``actor_id`` is given); the
        process ``spawned`` already in that Context, if given."""
        assert env.context is not None
        worker_id = f"worker-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            worker_id, env.context, self._bootstrap, self._on_message, self._on_exit, spawned
        )
        worker.env = env
        worker.actor_id = actor_id
        identity = {
            "job_id": self._job_id,
            "worker_id": worker_id,
            "actor_id": actor_id,
            "runtime_env": env.as_dict(),
            "max_concurrency": max_concurrency,
        }
        worker.send(messages.Init(identity))
        self._workers[worker_id] = worker
        return worker

    def take_idle(self, env: EnvState) -> WorkerProcess | None:
        idle = self._idle.get(env.key)
        while idle:
            worker = idle.pop()
            if worker.alive:
                return worker
        return None

    def give_back(self, worker: WorkerProcess) -> None:
        worker.idle_since = time.monotonic()
        self._idle.setdefault(_pool_key(worker), []).append(worker)

    def retire(self, worker: WorkerProcess) -> None:
        """Ask it to exit; its exit is then handled like any other (:meth:`forget`)."""
        if worker.alive:
            worker.alive = False
            worker.send(messages.Exit())

    def retire_idle(self) -> None:
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            keep = [w for w in idle if w.alive and now - w.idle_since < self.idle_seconds]
            for worker in idle:
                if worker not in keep:
                    self.retire(worker)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def forget(self, worker: WorkerProcess) -> bool:
        """Drop an exited worker; False if it was already forgotten."""
        idle = self._idle.get(_pool_key(worker))
        if idle is not None and worker in idle:
            idle.remove(worker)
            if not idle:
                del self._idle[_pool_key(worker)]
        return self._workers.pop(worker.worker_id, None) is not None

    def find(self, worker_id: str) -> WorkerProcess | None:
        return self._workers.get(worker_id)

    def drain(self) -> list[WorkerProcess]:
        """Every worker, forgotten: for shutdown."""
        workers = list(self._workers.values())
        self._workers.clear()
        self._idle.clear()
        return workers


def _pool_key(worker: WorkerProcess) -> str:
    assert worker.env is not None
    return worker.env.key
