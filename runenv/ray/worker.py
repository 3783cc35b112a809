"""What runs inside a Ray worker before user code: runenv's engine, and the plugin check.

A node without runenv's plugin ignores the ``runenv`` field of a runtime_env (Ray logs a
warning and starts the worker in the cluster's base env). Work must never run there silently,
so each worker checks, once, that the plugin prepared it: the plugin sets
:data:`~runenv.ray.translate.ACTIVE_VARIABLE` to the key of the env it made.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from runenv.core import runtime as runtimes
from runenv.errors import RuntimeEnvSetupError
from runenv.ray import translate

_lock = threading.Lock()
_checked: list[RuntimeEnvSetupError | None] = []  # the outcome of this worker's check


EngineStarter = Callable[[], Any]


def enter_worker(start_engine: EngineStarter) -> None:
    """Install the worker's engine (once) and raise if the plugin did not prepare this worker.

    ``start_engine`` travels with the task body (pickled by reference), so this module needs
    nothing of the engine's."""
    if not _checked:
        with _lock:
            if not _checked:
                if runtimes.current() is None:
                    runtimes.install(start_engine())
                _checked.append(_plugin_check())
    failure = _checked[0]
    if failure is not None:
        raise failure


def _plugin_check() -> RuntimeEnvSetupError | None:
    import ray

    context = ray.get_runtime_context()
    expected = translate.expected_key(dict(context.runtime_env or {}))
    if expected is None or os.environ.get(translate.ACTIVE_VARIABLE) == expected:
        return None
    node = context.get_node_id()
    return RuntimeEnvSetupError(
        f"node {socket.gethostname()} (Ray node {node[:12]}) has no runenv plugin: it ignored "
        "the runtime env and would have run this work in the cluster's base Python",
        hint="start that node with `runenv ray start …`, or set RAY_RUNTIME_ENV_PLUGINS="
        f"'{translate.plugins_variable_value()}' before `ray start` (see docs/ray.md); "
        "or run in stock mode: RUNENV_RAY_MODE=stock",
    )


def task_body(function: Callable[..., Any], start_engine: EngineStarter) -> Callable[..., Any]:
    """The function Ray runs for a runenv task: the check, then the user's function."""

    @functools.wraps(function)
    def runenv_task(*args: Any, **kwargs: Any) -> Any:
        enter_worker(start_engine)
        return function(*args, **kwargs)

    return runenv_task


def actor_class(cls: type, start_engine: EngineStarter) -> type:
    """The class Ray instantiates for a runenv actor: the check before the user's __init__."""

    original_init: Any = cls.__init__  # type: ignore[misc]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        enter_worker(start_engine)
        original_init(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__qualname__": cls.__qualname__})


def raise_error(error: BaseException) -> None:
    """A task that fails with ``error``: the result of work whose env could not be prepared."""
    raise error
