"""The Ray-compatible API: ``init``, ``remote``, ``get``, ``wait``, ``put``, actors.

The same functions work in the driver (where they talk to the embedded engine) and inside tasks
and actors (where they talk to the driver), so nested work needs nothing special. This module
imports only the standard library, cloudpickle and ``runenv.core``: it is also what isolated
workers import as ``runenv``.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

import cloudpickle

from runenv.core import runtime as runtimes
from runenv.core.refs import ActorHandle, ObjectRef
from runenv.core.runtime import CallOptions, Engine, FunctionSpec, engine
from runenv.digests import bytes_digest
from runenv.errors import RunenvError, UsageError, UsageTypeError

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ObjectRef",
    "RemoteFunction",
    "RuntimeContext",
    "get",
    "get_actor",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "put",
    "remote",
    "shutdown",
    "wait",
]

T = TypeVar("T")
_init_lock = threading.Lock()


def init(
    runtime_env: Any = None,
    num_cpus: int | None = None,
    address: str | None = None,
) -> None:
    """Start the engine. ``runtime_env`` is the parent of every task and actor env.

    ``address`` picks it as ``ray.init`` does: left out, the embedded engine on this machine
    unless ``RAY_ADDRESS`` names a Ray cluster; ``"local"``, always the embedded engine;
    ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``, that Ray cluster.
    """
    with _init_lock:
        if runtimes.current() is not None:
            raise RunenvError(
                "runenv.init() was already called", hint="call runenv.shutdown() first"
            )
        if num_cpus is not None:
            _check_number("num_cpus", num_cpus, 0, whole=False)
        if address is not None and not isinstance(address, str):
            raise UsageTypeError(
                f"address must be a string, not {type(address).__name__}",
                hint="e.g. 'auto', '10.0.0.5:6379' or 'ray://10.0.0.5:10001'",
            )
        runtimes.install(_start_engine(runtime_env, num_cpus, address))


def is_initialized() -> bool:
    return runtimes.current() is not None


def shutdown() -> None:
    """Stop every worker this driver started."""
    with _init_lock:
        running = runtimes.current()
        if running is not None:
            running.shutdown()
            runtimes.install(None)


def _start_engine(
    runtime_env: Any = None, num_cpus: int | None = None, address: str | None = None
) -> Engine:
    # The driver side (not in workers).
    ray_address = _ray_address(address)
    if ray_address is not None:
        from runenv.ray.engine import RayEngine

        return RayEngine.connect(ray_address or None, runtime_env=runtime_env, num_cpus=num_cpus)
    # The first worker starts before the engine's imports, so that its start-up overlaps them.
    from runenv.engine.early import start_first_worker

    first = start_first_worker(runtime_env)
    try:
        from runenv.engine.local import LocalEngine

        return LocalEngine(runtime_env=runtime_env, num_cpus=num_cpus, first=first)
    except BaseException:
        if first is not None:
            first.discard()
            first.lease.release()
        raise


def _ray_address(address: str | None) -> str | None:
    """The Ray address to connect to ("" for RAY_ADDRESS, which Ray reads), or None for the
    embedded engine."""
    if address == "local":
        return None
    if address is None:
        return "" if os.environ.get("RAY_ADDRESS") else None
    return address


def _running() -> Engine:
    """The engine that made the refs being asked about: never a new one."""
    running = runtimes.current()
    if running is None:
        raise RunenvError(
            "runenv is not running: these refs belong to a session that was shut down",
            hint="refs do not survive runenv.shutdown(); submit the work again after init()",
        )
    return running


runtimes.set_starter(_start_engine)  # implicit on first use, as in Ray


# --- remote functions and classes --------------------------------------------------------


class RemoteFunction:
    """A function that runs as a task: ``f.remote(...)`` returns an ObjectRef."""

    def __init__(self, function: Callable[..., Any], options: CallOptions) -> None:
        self._function = function
        self._options = options
        self._spec: FunctionSpec | None = None
        self.__name__ = getattr(function, "__name__", "function")
        self.__doc__ = function.__doc__

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        spec = self._spec or _spec_of(self._function)
        self._spec = spec  # pickled once, not with every call
        return ObjectRef(engine().submit_task(spec, args, kwargs, self._options))

    def options(self, **options: Any) -> RemoteFunction:
        copy = RemoteFunction(self._function, self._options.merged(**_checked(options)))
        copy._spec = self._spec
        return copy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageTypeError(
            f"remote function {self.__name__} cannot be called directly",
            hint=f"use {self.__name__}.remote(...)",
        )


class ActorClass:
    """A class whose instances are actors: ``Cls.remote(...)`` returns an ActorHandle."""

    def __init__(self, cls: type, options: CallOptions) -> None:
        self._cls = cls
        self._options = options
        self._spec: FunctionSpec | None = None
        self.__name__ = cls.__name__

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        spec = self._spec or _spec_of(self._cls)
        self._spec = spec
        actor_id = engine().create_actor(spec, args, kwargs, self._options)
        return ActorHandle(actor_id, self._cls.__name__, _public_methods(self._cls))

    def options(self, **options: Any) -> ActorClass:
        copy = ActorClass(self._cls, self._options.merged(**_checked(options)))
        copy._spec = self._spec
        return copy


@overload
def remote(function_or_class: type) -> ActorClass: ...  # type: ignore[overload-overlap]
@overload
def remote(function_or_class: Callable[..., Any]) -> RemoteFunction: ...
@overload
def remote(
    function_or_class: None = None, **options: Any
) -> Callable[[Any], RemoteFunction | ActorClass]: ...


def remote(function_or_class: Any = None, **options: Any) -> Any:
    """``@remote`` or ``@remote(num_cpus=..., runtime_env=..., max_retries=..., ...)``."""
    if function_or_class is not None and not options:
        return _make_remote(function_or_class, CallOptions())
    checked = CallOptions().merged(**_checked(options))
    return lambda target: _make_remote(target, checked)


def _make_remote(target: Any, options: CallOptions) -> RemoteFunction | ActorClass:
    if inspect.isclass(target):
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise UsageTypeError(
        f"@runenv.remote takes a function or a class, not {type(target).__name__}",
        hint="decorate a def or a class",
    )


# --- objects -----------------------------------------------------------------------------


@overload
def get(refs: ObjectRef, *, timeout: float | None = None) -> Any: ...
@overload
def get(refs: Sequence[ObjectRef], *, timeout: float | None = None) -> list[Any]: ...


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """The value(s) of one ObjectRef or a list of them; raises what the task raised."""
    if isinstance(refs, ObjectRef):
        return _running().get([refs.id], timeout)[0]
    ids = [_ref_id(ref) for ref in refs]
    return _running().get(ids, timeout)


def wait(
    refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """(ready, not ready): returns once ``num_returns`` are ready or ``timeout`` passes."""
    if num_returns > len(refs):
        raise UsageError(
            f"num_returns={num_returns} is more than the {len(refs)} refs given",
            hint="num_returns is at most len(refs)",
        )
    by_id = {_ref_id(ref): ref for ref in refs}
    if len(by_id) != len(refs):
        raise UsageError(
            "wait() expects distinct ObjectRefs; the list repeats one",
            hint="pass each ref once (e.g. list(dict.fromkeys(refs)))",
        )
    ready, pending = _running().wait(list(by_id), num_returns, timeout)
    return [by_id[i] for i in ready], [by_id[i] for i in pending]


def put(value: Any) -> ObjectRef:
    if isinstance(value, ObjectRef):
        raise UsageTypeError(
            "put() of an ObjectRef: it is a ref already", hint="pass the ref itself, or [ref]"
        )
    return ObjectRef(engine().put(value))


def get_actor(name: str) -> ActorHandle:
    handle: ActorHandle = engine().get_actor(name)
    return handle


def kill(actor: ActorHandle) -> None:
    engine().kill(actor._actor_id)


class RuntimeContext:
    """What the current work is: job id, task or actor id, and its effective runtime_env."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.job_id: str = data["job_id"]
        self.task_id: str | None = data.get("task_id")
        self.actor_id: str | None = data.get("actor_id")
        self.runtime_env: dict[str, Any] = data.get("runtime_env") or {}

    def get_job_id(self) -> str:
        return self.job_id

    def get_task_id(self) -> str | None:
        return self.task_id

    def get_actor_id(self) -> str | None:
        return self.actor_id

    def __repr__(self) -> str:
        ids = f"job_id={self.job_id!r}, task_id={self.task_id!r}, actor_id={self.actor_id!r}"
        return f"RuntimeContext({ids})"


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(engine().runtime_context())


# --- helpers -----------------------------------------------------------------------------

_KNOWN_OPTIONS = set(CallOptions.__dataclass_fields__)


def _checked(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - _KNOWN_OPTIONS
    if unknown:
        raise UsageError(
            f"unknown option(s) {sorted(unknown)}",
            hint=f"known options: {', '.join(sorted(_KNOWN_OPTIONS))}",
        )
    for name, value in options.items():
        _check_option(name, value)
    return options


# The least value of each numeric option (Ray's ranges: -1 retries means retry forever).
_LEAST = {"num_cpus": 0, "max_retries": -1, "max_calls": 0, "max_concurrency": 1}


def _check_option(name: str, value: Any) -> None:
    """Options are checked where they are given, not when the work is scheduled (runtime_env
    is validated by the spec, when the work is submitted)."""
    if value is None:
        return
    if name in _LEAST:
        _check_number(name, value, _LEAST[name], whole=name != "num_cpus")
    elif name == "resources":
        if not isinstance(value, dict):
            raise UsageTypeError(
                f"resources must be a dict, not {type(value).__name__}", hint="e.g. {'gpu': 1}"
            )
        for resource, amount in value.items():
            _check_number(f"resources[{resource!r}]", amount, 0, whole=False)
    elif name == "name" and not isinstance(value, str):
        raise UsageTypeError(f"name must be a string, not {type(value).__name__}", hint="e.g. 'a1'")


def _check_number(name: str, value: Any, least: float, *, whole: bool) -> None:
    kinds = (int,) if whole else (int, float)
    expected = "an integer" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UsageTypeError(
            f"{name} must be {expected}, not {type(value).__name__}",
            hint=f"e.g. {name}=1",
        )
    if not least <= value < float("inf"):  # NaN fails too
        raise UsageError(f"{name}={value!r} is out of range", hint=f"use at least {least}")


def _spec_of(target: Any) -> FunctionSpec:
    pickled = cloudpickle.dumps(target)
    name = getattr(target, "__qualname__", getattr(target, "__name__", "function"))
    methods = _public_methods(target) if inspect.isclass(target) else ()
    return FunctionSpec(bytes_digest(pickled)[:32], name, pickled, methods, target)


def _public_methods(cls: type) -> tuple[str, ...]:
    return tuple(
        name
        for name, member in inspect.getmembers(cls)
        if callable(member) and (not name.startswith("_") or name == "__call__")
    )


def _ref_id(ref: Any) -> str:
    if not isinstance(ref, ObjectRef):
        raise UsageTypeError(
            f"expected ObjectRef, got {type(ref).__name__}",
            hint="pass the refs that .remote() or put() returned",
        )
    return ref.id
