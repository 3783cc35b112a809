"""An actor as the engine keeps it: its worker, its queue of calls, who holds a handle to it."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from runenv.core.refs import actor_key
from runenv.core.runtime import CallOptions, FunctionSpec
from runenv.engine.envs import EnvState
from runenv.engine.tasks import Task
from runenv.engine.workers import WorkerProcess


@dataclass(eq=False)
class Actor:
    id: str
    name: str | None
    class_name: str
    methods: tuple[str, ...]
    env: EnvState
    max_concurrency: int
    num_cpus: float  # held while its worker lives (Ray's semantics)
    queue: deque[Task] = field(default_factory=deque)
    in_flight: dict[str, Task] = field(default_factory=dict)
    worker: WorkerProcess | None = None
    dead: str | None = None  # why it died
    holders: set[str] = field(default_factory=set)  # processes with a handle to it
    unreferenced: bool = False  # its handles were all dropped (it had some: it was created)

    @classmethod
    def new(cls, spec: FunctionSpec, options: CallOptions, env: EnvState) -> Actor:
        return cls(
            id=uuid.uuid4().hex[:16],
            name=options.name,
            class_name=spec.name,
            methods=spec.methods,
            env=env,
            max_concurrency=options.max_concurrency or 1,
            num_cpus=0.0 if options.num_cpus is None else float(options.num_cpus),
        )

    @property
    def key(self) -> str:
        """Its key among handles, and its name in the CPU ledger."""
        return actor_key(self.id)

    def idle_out_of_scope(self) -> bool:
        """No handle is left and nothing is queued: an unnamed actor stops (named ones live until
        killed, as their name can find them)."""
        idle = self.dead is None and not self.queue and not self.in_flight
        return idle and self.unreferenced and not self.holders and self.name is None
