"""The engine's first worker, started before the engine is built.

A worker's Python start-up and imports take longer than the driver's own set-up, and they run
in another process — on another core. Starting the first worker before the driver imports the
rest of the engine lets the two overlap, so the first task does not wait for a Python start.
Only the empty job env can start this early: any other needs setting up first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runenv import settings
from runenv.cache import Lease, ResourceCache
from runenv.engine.envs import host_context
from runenv.engine.workers import Spawned, bootstrap_directory, kill_spawned, spawn


@dataclass
class FirstWorker:
    bootstrap: Path  # the bootstrap directory, and its lease, for the engine to keep
    lease: Lease
    spawned: Spawned | None  # the process, until the engine adopts it

    def discard(self) -> None:
        """The engine never adopted it (it failed to start, or shut down first)."""
        if self.spawned is not None:
            kill_spawned(self.spawned)
            self.spawned = None


def start_first_worker(runtime_env: Any) -> FirstWorker | None:
    """The bootstrap directory and a worker of the empty env, or None when the job env is not
    empty (its worker starts once the env is set up)."""
    if runtime_env or os.environ.get(settings.JOB_ENV_VARIABLE):
        return None
    bootstrap, lease = bootstrap_directory(ResourceCache())
    try:
        spawned = spawn(host_context(), bootstrap)
    except BaseException:
        lease.release()
        raise
    return FirstWorker(bootstrap, lease, spawned)
