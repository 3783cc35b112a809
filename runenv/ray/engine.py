"""The Ray backend: runenv's API running on a Ray cluster (``runenv.init(address=...)``).

Tasks and actors become Ray's; runenv's handles name Ray's references (:mod:`.handles`); Ray's
failures become the same runenv errors as on the embedded engine (:mod:`.errors`); each call's
env is merged, prepared and translated on the driver (:mod:`.envs`), then made real on each node
by runenv's plugin, or by Ray's own fields on a cluster without it (:mod:`.translate`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from runenv import settings
from runenv.core.refs import ActorHandle, ObjectRef
from runenv.core.runtime import CallOptions, FunctionSpec
from runenv.errors import RunenvError, RuntimeEnvSetupError, SpecError, UsageError, UsageTypeError
from runenv.ray import errors, translate, worker
from runenv.ray.envs import RayEnvs, mode_setting
from runenv.ray.handles import TABLE, install_reducers, remove_reducers
from runenv.ray.translate import Mode
from runenv.spec import RuntimeEnv

logger = logging.getLogger(__name__)
_CACHED_CALLS = 1024
PROBE_TIMEOUT_S = 120.0
KILL_WAIT_S = 30.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RunenvError(
            "Ray is not installed in this Python", hint="pip install 'runenv[ray]'"
        ) from None
    return ray


class RayEngine:
    """The Engine protocol over Ray, in a driver or inside a Ray worker."""

    def __init__(self, envs: RayEnvs, *, driver: bool, owns_ray: bool) -> None:
        self.envs = envs
        self.driver = driver
        self._owns_ray = owns_ray
        self._lock = threading.Lock()
        self._functions: dict[str, Any] = {}  # spec id -> Ray remote function or actor class
        self._failed_actors: dict[str, RuntimeEnvSetupError] = {}
        self._calls: OrderedDict[tuple[str, int], tuple[CallOptions, Any]] = OrderedDict()
        install_reducers()

    # --- starting ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls, address: str | None, runtime_env: Any = None, num_cpus: int | None = None
    ) -> RayEngine:
        """The driver's engine: connect to the cluster at ``address`` (or RAY_ADDRESS)."""
        ray = _ray()
        if num_cpus is not None:
            raise UsageError(
                "num_cpus cannot be given when connecting to a Ray cluster",
                hint="a cluster's CPUs are its nodes': set them with `ray start --num-cpus`",
            )
        # Ray's `uv run` hook would turn a driver run by `uv run` into a py_executable that
        # fights runenv's own env (RAY-NOTES): runenv decides the interpreter.
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        job_env = _job_env(runtime_env)
        owns = not ray.is_initialized()
        if owns:
            _init_ray(ray, address)
        explicit = job_env is not None
        if job_env is None:  # a Ray job's driver: its env is the job's, which Ray passes down
            job_env = translate.from_ray(dict(ray.get_runtime_context().runtime_env or {}))
        envs = RayEnvs(job_env, detect_mode, explicit=explicit)
        engine = cls(envs, driver=True, owns_ray=owns)
        if not explicit:
            return engine
        try:
            # Packaged and locked now, as ray.init uploads its working_dir: the job runs
            # what it was started with, and a bad env fails here.
            envs.job_env()
        except BaseException:
            engine.shutdown()
            raise
        return engine

    @classmethod
    def in_worker(cls) -> RayEngine:
        """The engine of a Ray worker running runenv work: nested calls go to the cluster."""
        ray = _ray()
        current = translate.from_ray(dict(ray.get_runtime_context().runtime_env or {}))
        return cls(RayEnvs(current, detect_mode, explicit=False), driver=False, owns_ray=False)

    # --- tasks and actors -------------------------------------------------------------------

    def submit_task(
        self,
        function: FunctionSpec,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> str:
        try:
            remote = self._call(function, options, self._task_options)
        except _INPUT_ERRORS:
            raise
        except RunenvError as error:  # preparing its env failed: its get raises, as embedded
            return self._failed(_setup_error(f"task {function.name}", error))
        ray_ref = self._ray_call(remote.remote, args, kwargs)
        return TABLE.add_object(ray_ref)

    def create_actor(
        self, cls: FunctionSpec, args: Sequence[Any], kwargs: dict[str, Any], options: CallOptions
    ) -> str:
        TABLE.drain()
        try:
            remote = self._call(cls, options, self._actor_options)
        except _INPUT_ERRORS:
            raise
        except RunenvError as error:  # an actor whose env failed: every call raises it
            actor_id = f"failed-{uuid.uuid4().hex}"
            self._failed_actors[actor_id] = _setup_error(f"actor {cls.name}", error)
            return actor_id
        handle = self._ray_call(remote.remote, args, kwargs)
        return TABLE.add_actor(handle, cls.name, cls.methods)

    def submit_actor_task(
        self, actor_id: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> str:
        failure = self._failed_actors.get(actor_id)
        if failure is not None:
            return self._failed(failure)
        bound = TABLE.method(actor_id, method)
        return TABLE.add_object(self._ray_call(bound.remote, args, kwargs))  # which drains

    def _failed(self, error: RuntimeEnvSetupError) -> str:
        """An object whose get raises ``error`` (and so does any work that takes it)."""
        failed = _ray().remote(worker.raise_error).options(num_cpus=0, max_retries=0)
        return TABLE.add_object(failed.remote(error))

    def _call(
        self,
        spec: FunctionSpec,
        options: CallOptions,
        ray_options: Callable[[CallOptions], dict[str, Any]],
    ) -> Any:
        """The Ray remote function or actor class for ``spec`` with ``options`` applied, made
        once per options object (Ray exports the function once per spec)."""
        key = (spec.id, id(options))
        cached = self._calls.get(key)
        if cached is not None and cached[0] is options:
            return cached[1]
        base = self._functions.get(spec.id)
        if base is None:
            base = _ray().remote(_wrapped(spec))
            self._functions[spec.id] = base
        given = {name: value for name, value in ray_options(options).items() if value is not None}
        try:
            optioned = base.options(**given) if given else base
        except (ValueError, TypeError) as error:
            raise UsageError(
                f"options {given!r}: {error}", hint="check the option values"
            ) from None
        with self._lock:
            self._calls[key] = (options, optioned)
            while len(self._calls) > _CACHED_CALLS:
                self._calls.popitem(last=False)
        return optioned

    def _task_options(self, options: CallOptions) -> dict[str, Any]:
        return {
            "num_cpus": options.num_cpus,
            "max_retries": options.max_retries,
            "max_calls": options.max_calls,
            "resources": options.resources,
            "runtime_env": self.envs.for_options(options),
        }

    def _actor_options(self, options: CallOptions) -> dict[str, Any]:
        return {
            "num_cpus": options.num_cpus,
            "max_concurrency": options.max_concurrency,
            "name": options.name,
            "resources": options.resources,
            "runtime_env": self.envs.for_options(options),
        }

    def _ray_call(
        self, call: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        # Top-level refs are Ray's, so Ray resolves them before the task runs (as runenv's
        # embedded engine does); refs nested deeper travel as refs (see handles).
        ray_args = [TABLE.object(a.id) if isinstance(a, ObjectRef) else a for a in args]
        ray_kwargs = {
            name: TABLE.object(v.id) if isinstance(v, ObjectRef) else v
            for name, v in kwargs.items()
        }
        try:
            return call(*ray_args, **ray_kwargs)
        except ValueError as error:  # e.g. an actor name that is taken
            raise UsageError(
                str(error), hint="use runenv.get_actor(name), or another name"
            ) from None

    # --- objects ----------------------------------------------------------------------------

    def get(self, ids: Sequence[str], timeout: float | None) -> list[Any]:
        ray = _ray()
        TABLE.drain()
        refs = [TABLE.object(object_id) for object_id in ids]
        try:
            values: list[Any] = ray.get(refs, timeout=timeout)
        except ray.exceptions.RayError as error:
            raise errors.from_ray(error) from None
        return values

    def wait(
        self, ids: Sequence[str], num_returns: int, timeout: float | None
    ) -> tuple[list[str], list[str]]:
        ray = _ray()
        TABLE.drain()
        refs = [TABLE.object(object_id) for object_id in ids]
        ready, pending = ray.wait(refs, num_returns=num_returns, timeout=timeout)
        return [ref.hex() for ref in ready], [ref.hex() for ref in pending]

    def put(self, value: Any) -> str:
        TABLE.drain()
        return TABLE.add_object(_ray().put(value))

    def get_actor(self, name: str) -> ActorHandle:
        ray = _ray()
        TABLE.drain()
        try:
            handle = ray.get_actor(name)
        except ValueError:
            raise UsageError(
                f"no actor named {name!r}",
                hint="create it with Cls.options(name=...).remote() first; "
                "a killed or dead actor's name is free again",
            ) from None
        class_name = handle._ray_actor_creation_function_descriptor.class_name
        methods = tuple(
            method
            for method in handle._ray_method_signatures
            if not method.startswith("_") or method == "__call__"
        )
        return ActorHandle(TABLE.add_actor(handle, class_name, methods), class_name, methods)

    def kill(self, actor_id: str) -> None:
        """Kill the actor and return once it is dead, as on the embedded engine (Ray's kill
        only asks: a call made right after it could still run)."""
        if self._failed_actors.pop(actor_id, None) is not None:
            return
        ray = _ray()
        TABLE.drain()
        ray.kill(TABLE.actor(actor_id), no_restart=True)
        from ray._private.state import actors

        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline:
            if (actors(actor_id=actor_id) or {}).get("State") == "DEAD":
                return
            time.sleep(0.02)  # polling the GCS's record of the actor, which has no waiter
        logger.warning("actor %s was asked to stop but is not dead yet", actor_id)

    def runtime_context(self) -> dict[str, Any]:
        context = _ray().get_runtime_context()
        env = self.envs.parent
        return {
            "job_id": context.get_job_id(),
            "task_id": None if self.driver else context.get_task_id(),
            "actor_id": context.get_actor_id(),
            "runtime_env": env.to_dict() if env is not None else {},
            "node_id": context.get_node_id(),
        }

    def stats(self) -> dict[str, int]:
        TABLE.drain()
        return TABLE.sizes()

    def shutdown(self) -> None:
        TABLE.clear()
        remove_reducers()
        if self._owns_ray:
            _ray().shutdown()


# Errors in what the caller wrote, raised at once (as the embedded engine does); any other
# failure to prepare an env is the work's setup failure, raised by get().
_INPUT_ERRORS = (SpecError, UsageError, UsageTypeError)


def _setup_error(where: str, error: RunenvError) -> RuntimeEnvSetupError:
    return RuntimeEnvSetupError(
        f"{where}: runtime env setup failed: {error.message}",
        hint=error.hint,
        log_path=getattr(error, "log_path", None),
    )


def _wrapped(spec: FunctionSpec) -> Any:
    target = spec.target if spec.target is not None else cloudpickle.loads(spec.pickled)
    _ship_by_value_as_cloudpickle_does(target)
    if isinstance(target, type):
        return worker.actor_class(target, RayEngine.in_worker)
    return worker.task_body(target, RayEngine.in_worker)


def _ship_by_value_as_cloudpickle_does(target: Any) -> None:
    """Ray pickles with its own copy of cloudpickle: a module the user registered to be
    pickled by value (cloudpickle.register_pickle_by_value) is registered with Ray's too."""
    import ray.cloudpickle as ray_cloudpickle

    module = sys.modules.get(getattr(target, "__module__", "") or "")
    if module is None:
        return
    by_value: set[str] = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", set())
    ray_by_value: set[str] = getattr(ray_cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", set())
    if module.__name__ in by_value and module.__name__ not in ray_by_value:
        ray_cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]


def _init_ray(ray: Any, address: str | None) -> None:
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        # A failed connection can leave Ray half set up (client mode on, no GCS client):
        # undone, so that a later init in this process starts clean.
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = address or os.environ.get("RAY_ADDRESS") or "auto"
        raise RunenvError(
            f"cannot connect to the Ray cluster at {where}: {error}",
            hint="check the address (HOST:PORT of the head's GCS, 'auto', or ray://HOST:PORT) "
            "and that the head is running (`ray status`)",
        ) from None


def _job_env(runtime_env: Any) -> RuntimeEnv | None:
    inherited = os.environ.get(settings.JOB_ENV_VARIABLE)
    if runtime_env is None and inherited:
        runtime_env = json.loads(inherited)
    if runtime_env is None:
        return None
    if isinstance(runtime_env, RuntimeEnv):
        return runtime_env
    if not isinstance(runtime_env, dict):
        raise UsageTypeError(
            f"runtime_env must be a dict or a RuntimeEnv, not {type(runtime_env).__name__}",
            hint='e.g. runenv.init(runtime_env={"pip": ["requests"]})',
        )
    return RuntimeEnv.from_dict(runtime_env, base_dir=Path.cwd())


# --- finding out whether the cluster's nodes have runenv's plugin ---------------------------


def detect_mode() -> Mode:
    """``RUNENV_RAY_MODE``, else ask each alive node (once per driver) whether the plugin acts
    there: all of them → plugin mode; none → stock mode, said once; some → plugin mode, and
    work that lands on a node without it fails with a clear error (see runenv.ray.worker)."""
    setting = mode_setting()
    if setting != "auto":
        return "stock" if setting == "stock" else "plugin"
    if os.environ.get(translate.ACTIVE_VARIABLE):
        return "plugin"  # this process runs in an env the plugin made
    answers = _probe_nodes()
    if answers and not any(answers.values()):
        print(
            "runenv: no node of this Ray cluster has runenv's plugin: envs use Ray's own "
            "pip/uv/working_dir fields (stock mode). Set RUNENV_RAY_MODE to choose.",
            file=sys.stderr,
        )
        return "stock"
    return "plugin"


PROBE_ENV = {"env_vars": {"RUNENV_PROBE": "1"}}


_probed: dict[frozenset[str], dict[str, bool]] = {}  # answers by the set of nodes asked


def _probe_nodes() -> dict[str, bool]:
    """Whether each alive node has the plugin: from the GCS records the plugins leave at
    start, and for nodes without one, from a probe task (a node may run an older runenv)."""
    ray = _ray()
    from ray.experimental.internal_kv import _internal_kv_exists

    nodes = frozenset(node["NodeID"] for node in ray.nodes() if node["Alive"])
    if nodes not in _probed:
        namespace = translate.REGISTRY_NAMESPACE
        known = {
            n for n in nodes if _internal_kv_exists(translate.registry_key(n), namespace=namespace)
        }
        answers = dict.fromkeys(known, True)
        if known != nodes:
            answers.update(_ask_nodes(sorted(nodes - known)))
        _probed[nodes] = answers
    return _probed[nodes]


def _ask_nodes(nodes: list[str]) -> dict[str, bool]:
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    field = {"env_vars": dict(PROBE_ENV["env_vars"])}
    expected = translate.plugin_key(field)
    variable = translate.ACTIVE_VARIABLE

    def active_variable() -> str | None:  # by value: the node needs nothing of runenv
        return os.environ.get(variable)

    probe = ray.remote(active_variable)
    refs = {
        node: probe.options(
            num_cpus=0,
            max_retries=0,
            runtime_env={translate.PLUGIN_FIELD: field},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote()
        for node in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    answers = {}
    for node, ref in refs.items():
        if ref in ready:
            try:
                answers[node] = ray.get(ref) == expected
            except ray.exceptions.RayError:
                continue
    return answers
