"""runenv's Ray ``RuntimeEnvPlugin``: a runenv env on every Ray node, in the node's own cache.

Registered on each node before ``ray start`` with ``RAY_RUNTIME_ENV_PLUGINS`` (see
:func:`runenv.ray.translate.plugins_variable_value`, or ``runenv ray start``); the runtime env
agent imports it, so runenv must be installed in the cluster's Python. It acts on the
``runenv`` field of a runtime_env (what ``translate.to_ray(prepared, "plugin")`` makes):

- ``create`` materializes the env from the driver's lock in the node's persistent cache
  (``RUNENV_HOME`` of ``ray start``'s environment) in a thread, and keeps its cache leases
  while Ray uses the URI (until ``delete_uri``);
- ``modify_context`` starts the worker with the env's interpreter, PATH, VIRTUAL_ENV, working
  dir, PYTHONPATH and env_vars, the overlay that makes Ray importable there
  (:mod:`runenv.ray.overlay`), and ``RUNENV_ACTIVE`` = the env's key.

Priority 90: after Ray's built-in plugins (10), so the interpreter chosen here is the one used
whatever ``py_executable`` (e.g. from Ray's ``uv run`` hook) says.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ray._private.runtime_env.context import RuntimeEnvContext
from ray._private.runtime_env.plugin import RuntimeEnvPlugin

from runenv.errors import EnvSetupError, RunenvError
from runenv.ray import node, overlay, translate
from runenv.ray.translate import PLUGIN_FIELD, PLUGIN_PRIORITY
from runenv.redact import redact_text
from runenv.spec import RuntimeEnv


class RunenvPlugin(RuntimeEnvPlugin):
    name = PLUGIN_FIELD
    priority = PLUGIN_PRIORITY

    def __init__(self) -> None:
        self._ready: dict[str, node.NodeEnv] = {}  # URI -> the env, its leases held
        self._sizes: dict[str, int] = {}  # URI -> the bytes reported to Ray's URI cache
        # URI -> its build in progress: setups of the same env at once (a job's supervisor and
        # its driver differ in Ray's env_vars, not in runenv's field) share one build.
        self._building: dict[str, asyncio.Future[node.NodeEnv]] = {}
        # The agent starts with `ray start`: find Ray's requirements (~0.4 s) before any task,
        # and say in the GCS that this node has the plugin (drivers then skip their probe).
        threading.Thread(target=overlay.warm_up, name="runenv-overlay", daemon=True).start()
        threading.Thread(target=register_node, name="runenv-register", daemon=True).start()

    @staticmethod
    def validate(runtime_env_dict: dict[str, Any]) -> None:
        node.field_env(runtime_env_dict)

    def get_uris(self, runtime_env: Any) -> list[str]:
        if not isinstance(runtime_env.get(PLUGIN_FIELD), Mapping):
            return []  # nothing for this plugin, or a bad field that validate() reports
        return [node.uri_of(node.field_key(runtime_env))]

    async def create(
        self, uri: str | None, runtime_env: Any, context: RuntimeEnvContext, logger: logging.Logger
    ) -> float:
        env = node.field_env(runtime_env)
        uri = uri or node.uri_of(env.key)
        logger.info("runenv: setting up env %s; locked: %s", env.key, node.locked_versions(env))
        try:
            ready = self._ready.get(uri)
            if ready is None:
                ready = await asyncio.shield(self._build(uri, env, logger))
        except RunenvError as error:
            failure = _setup_error(env.key, error)
            logger.error("%s", failure)
            raise failure from None
        for line in node.describe(ready):
            logger.info(line)
        return float(self._sizes.get(uri, 0))

    def _build(
        self, uri: str, env: RuntimeEnv, logger: logging.Logger
    ) -> asyncio.Future[node.NodeEnv]:
        """The build of ``uri``, started unless one is under way; the env is kept when done."""
        building = self._building.get(uri)
        if building is not None:
            return building

        def report(stage: str, detail: str) -> None:
            logger.info("runenv: %s: %s", stage, redact_text(detail))

        async def build() -> node.NodeEnv:
            try:
                ready = await asyncio.to_thread(node.build, env, report)
            finally:
                del self._building[uri]
            self._ready[uri] = ready
            self._sizes[uri] = _venv_bytes(ready)
            return ready

        building = self._building[uri] = asyncio.ensure_future(build())
        # Its failure is read here too: every setup waiting for it may have timed out.
        building.add_done_callback(lambda done: done.cancelled() or done.exception())
        return building

    def modify_context(
        self,
        uris: list[str],
        runtime_env: Any,
        context: RuntimeEnvContext,
        logger: logging.Logger,
    ) -> None:
        key = node.field_key(runtime_env)
        ready = self._ready.get(node.uri_of(key))
        if ready is None:  # Ray skipped create (its URI cache had it) but this agent did not
            ready = node.build(node.field_env(runtime_env), lambda stage, detail: None)
            self._ready[node.uri_of(key)] = ready
        if runtime_env.get("py_executable"):
            logger.warning(
                "runenv: the runtime_env's py_executable %r is replaced by the env's interpreter",
                runtime_env.get("py_executable"),
            )
        start = node.worker_start(ready, context.env_vars)
        context.py_executable = start.py_executable
        context.env_vars = start.env_vars
        context.command_prefix = [*context.command_prefix, *start.command_prefix]
        logger.info("runenv: workers of env %s start with %s", key, start.py_executable)

    def delete_uri(self, uri: str, logger: logging.Logger) -> float:
        ready = self._ready.pop(uri, None)
        if ready is None:
            return 0.0
        node.release_env(ready)
        logger.info("runenv: %s no longer used by Ray here: its cache leases are released", uri)
        return float(self._sizes.pop(uri, 0))  # what Ray counted; the entry stays in the cache


def register_node(argv: list[str] | None = None) -> bool:
    """Record in the GCS's KV store that this node's agent has runenv's plugin (best effort:
    a driver that finds no record asks the node with a probe task instead)."""
    given = _agent_options(sys.argv if argv is None else argv)
    address, node_id = given.get("--gcs-address"), given.get("--node-id")
    if not address or not node_id:
        return False
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]

        client = GcsClient(address=address, cluster_id=given.get("--cluster-id-hex"))
        key = translate.registry_key(node_id).encode()
        client.internal_kv_put(key, b"1", True, translate.REGISTRY_NAMESPACE.encode())
    except Exception:  # the probe still works
        logging.getLogger(__name__).warning("runenv: could not register the plugin in the GCS")
        return False
    return True


def _agent_options(argv: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` options of the runtime env agent's command line."""
    options: dict[str, str] = {}
    for index, word in enumerate(argv):
        if word.startswith("--") and "=" in word:
            name, value = word.split("=", 1)
            options[name] = value
        elif word.startswith("--") and index + 1 < len(argv):
            options[word] = argv[index + 1]
    return options


def _setup_error(key: str, error: RunenvError) -> EnvSetupError:
    """What reaches the driver in Ray's RuntimeEnvSetupError: runenv's message, hint, log."""
    log_path = getattr(error, "log_path", None)
    message = f"runenv could not set up env {key} on this node: {error.message}"
    if log_path:
        message += f"\nsetup log on the node: {log_path}"
    return EnvSetupError(message, hint=error.hint, step=getattr(error, "step", None))


def _venv_bytes(ready: node.NodeEnv) -> int:
    """What the env takes on disk for Ray's URI cache accounting (its own files, not uv's)."""
    from pathlib import Path

    from runenv.cache import disk_bytes

    venv = ready.context.env_vars.get("VIRTUAL_ENV")
    return disk_bytes(Path(venv)) if venv else 0
