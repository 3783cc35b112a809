"""The env registry: each runtime env the engine uses, set up once, kept while it is used.

Tasks, actors and workers each count as a user of their env. When the last one is gone (its
idle workers included), the env's cache leases are released, so ``runenv env gc`` can collect
its entries; the next use sets it up again (from the cache: milliseconds).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runenv.context import Context
from runenv.errors import RunenvError, SetupTimeoutError

if TYPE_CHECKING:
    from runenv.spec import RuntimeEnv

EMPTY_KEY = "{}"  # the canonical JSON of the empty env


@dataclass(eq=False)
class EnvState:
    key: str  # the env's canonical JSON
    env: RuntimeEnv | None  # None: the empty env, which needs no setup
    context: Context | None = None
    error: RunenvError | None = None
    users: int = 0

    @property
    def settled(self) -> bool:
        return self.context is not None or self.error is not None

    def as_dict(self) -> dict[str, object]:
        return self.env.to_dict() if self.env is not None else {}


class EnvRegistry:
    """Envs by canonical JSON. ``on_settled`` is called (on a setup thread) when an env is
    ready or has failed; callers hold the engine's lock around every other method."""

    def __init__(self, on_settled: Callable[[], None], lock: threading.RLock) -> None:
        self._envs: dict[str, EnvState] = {}
        self._on_settled = on_settled
        self._lock = lock
        self._setups = ThreadPoolExecutor(4, thread_name_prefix="runenv-setup")

    def __len__(self) -> int:
        return len(self._envs)

    def acquire(self, env: RuntimeEnv | None) -> EnvState:
        """The env's state, one more user counted; its setup starts if it is new."""
        key = EMPTY_KEY if env is None else env.canonical_json()
        state = self._envs.get(key)
        if state is None:
            state = self._envs[key] = EnvState(key, env)
            if env is None:
                state.context = host_context()
            else:
                self._setups.submit(self._set_up, state)
        state.users += 1
        return state

    def release(self, state: EnvState) -> None:
        state.users -= 1
        if state.users <= 0 and self._envs.get(state.key) is state:
            del self._envs[state.key]
            _release_leases(state)

    def close(self) -> None:
        self._setups.shutdown(wait=False, cancel_futures=True)
        for state in self._envs.values():
            _release_leases(state)
        self._envs.clear()

    def _set_up(self, state: EnvState) -> None:
        from runenv.materialize import materialize  # the spec and the cache: only when needed

        assert state.env is not None
        try:
            context, error = materialize(state.env), None
        except RunenvError as failure:
            context, error = None, failure
        except Exception as failure:  # a bug, but it must fail the tasks, not hang them
            context, error = None, RunenvError(f"internal error setting up the env: {failure!r}")
        with self._lock:
            state.context, state.error = context, error
            if self._envs.get(state.key) is not state:  # nobody wants it any more
                _release_leases(state)
            elif isinstance(error, SetupTimeoutError):
                # Its users fail now; the next one tries again (a timeout is not remembered).
                del self._envs[state.key]
        self._on_settled()


def host_context() -> Context:
    """The empty env: runenv's own interpreter, first on PATH (as ``materialize`` gives it)."""
    python = sys.executable
    return Context(env_key=EMPTY_KEY, python_executable=python, path=(os.path.dirname(python),))


def _release_leases(state: EnvState) -> None:
    if state.context is not None and state.context.lease_fds:
        from runenv.materialize import release  # loaded already: it made these leases

        release(state.context)
        state.context = state.context.with_changes(lease_fds=())
