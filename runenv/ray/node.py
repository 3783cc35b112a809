"""What runenv's Ray plugin does on a node, without Ray: check the env the driver sent, make it
ready in the node's own cache, and say how Ray's worker starts in it.

The plugin (:mod:`runenv.ray.plugin`) only adapts this to Ray's ``RuntimeEnvPlugin`` calls.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runenv import settings, uris
from runenv.context import Context
from runenv.deadline import Deadline
from runenv.errors import EnvSetupError, SpecError
from runenv.materialize import materialize, release
from runenv.ray import overlay, translate
from runenv.ray.translate import ACTIVE_VARIABLE, PLUGIN_FIELD
from runenv.spec import RuntimeEnv

URI_SCHEME = "runenv://"
# Ray's own fields that would build or pick another interpreter: they cannot go with runenv's.
CONFLICTING_FIELDS = ("pip", "uv", "conda", "container", "image_uri")
PYTHONPATH = "PYTHONPATH"


@dataclass(frozen=True)
class NodeEnv:
    """An env made ready on this node: runenv's Context and, for an isolated env, the overlay
    that lets Ray run in it. Both hold cache leases until :func:`release_env`."""

    key: str
    context: Context
    overlay: overlay.Overlay | None
    built: bool  # something was built (False: everything came from the node's cache)
    seconds: float


@dataclass(frozen=True)
class WorkerStart:
    """How Ray starts a worker in the env: its changes to Ray's ``RuntimeEnvContext``."""

    py_executable: str
    env_vars: dict[str, str]
    command_prefix: list[str] = field(default_factory=list)


def field_env(ray_runtime_env: Mapping[str, Any]) -> RuntimeEnv:
    """The runenv env in a Ray runtime_env (its ``runenv`` field), checked to be prepared:
    code as URIs every node can read, Python packages locked for this node's Python."""
    data = ray_runtime_env.get(PLUGIN_FIELD)
    if not isinstance(data, Mapping):
        raise SpecError(
            f"the {PLUGIN_FIELD!r} field must be a runtime_env dict, not {type(data).__name__}",
            hint="pass runenv.ray.translate.to_ray(prepared_env, 'plugin') as the runtime_env",
        )
    env = RuntimeEnv.from_dict(dict(data))
    _check_prepared(env)
    taken = [name for name in CONFLICTING_FIELDS if ray_runtime_env.get(name)]
    if taken:
        raise SpecError(
            f"the runtime_env sets Ray's {', '.join(taken)} besides runenv's field",
            hint="put the packages in the runenv env: runenv's plugin builds its interpreter",
        )
    return env


def field_key(ray_runtime_env: Mapping[str, Any]) -> str:
    """The key of the runenv env a Ray runtime_env carries: what the plugin sets
    ``RUNENV_ACTIVE`` to in every process it prepares (the driver compares it)."""
    return translate.plugin_key(ray_runtime_env[PLUGIN_FIELD])


def uri_of(key: str) -> str:
    return f"{URI_SCHEME}{key}"


def _check_prepared(env: RuntimeEnv) -> None:
    local = [
        location
        for location in (env.working_dir, *env.py_modules)
        if location and uris.scheme_of(location) is None
    ]
    if local:
        raise SpecError(
            f"the env sent to this Ray node names local paths: {', '.join(local)}",
            hint="prepare the env first (runenv.materialize.prepare): code goes to URIs",
        )
    _check_locked(env)
    python = _locked_python(env)
    here = platform.python_version()
    if python is not None and python.split(".")[:2] != here.split(".")[:2]:
        raise EnvSetupError(
            f"the env was locked for Python {python}, and Ray on this node runs "
            f"on Python {here} ({sys.executable}): a Ray worker can only run on the Python Ray "
            "is installed for",
            hint=f"prepare the env with Python {'.'.join(here.split('.')[:2])}, as the cluster",
            step="check",
        )


def _check_locked(env: RuntimeEnv) -> None:
    packages = env.python_packages
    unlocked = packages is not None and packages.lock is None
    conda = env.conda
    if unlocked or (isinstance(conda, dict) and "lock" not in conda):
        field = packages.tool if packages is not None else "conda"
        raise SpecError(
            f"the env's {field} packages are not locked",
            hint="prepare the env first (runenv.materialize.prepare): every node gets the lock",
        )


def _locked_python(env: RuntimeEnv) -> str | None:
    """The Python version the env's lock was made for (None: the env has no lock)."""
    packages = env.python_packages
    if packages is not None and packages.lock is not None:
        return packages.lock.python
    conda = env.conda
    return str(conda["lock"]["python"]) if isinstance(conda, dict) else None


def build(env: RuntimeEnv, report: Callable[[str, str], None]) -> NodeEnv:
    """Materialize ``env`` in this node's cache (``RUNENV_HOME``), and the overlay if the env
    has an interpreter of its own. Blocking: the plugin runs it in a thread."""
    started = time.monotonic()
    stages: list[str] = []

    def on_stage(stage: str, detail: str) -> None:
        stages.append(stage)
        report(stage, detail)

    context = materialize(env, on_stage)
    layer = None
    if context.python_executable != sys.executable:
        try:
            layer = overlay.acquire(Deadline(env.config.setup_timeout))
        except BaseException:
            release(context)
            raise
        if layer.entry.built:
            stages.append("overlay")
    built = any(stage != "cached" for stage in stages)
    return NodeEnv(env.key, context, layer, built, time.monotonic() - started)


def release_env(node_env: NodeEnv) -> None:
    release(node_env.context)
    if node_env.overlay is not None:
        node_env.overlay.entry.lease.release()


def worker_start(
    node_env: NodeEnv, ray_env_vars: Mapping[str, str], host: Mapping[str, str] | None = None
) -> WorkerStart:
    """How a worker starts in ``node_env``, over what Ray's own plugins (working_dir,
    py_modules from ``gcs://``, env_vars) put in its context (``ray_env_vars``).

    PYTHONPATH: the overlay's hook first (its sitecustomize must be the one found), then
    runenv's entries, then Ray's; the host's own entries only when the env is not isolated.
    """
    host = os.environ if host is None else host
    context = node_env.context
    full = context.environment(host)
    changed = {name: value for name, value in full.items() if host.get(name) != value}
    for name in context.unset_vars:  # Ray can only set variables: an empty one is ignored
        changed.setdefault(name, "")
    isolated = PYTHONPATH in context.unset_vars
    if PYTHONPATH in context.env_vars:  # the user's own value replaces the composed one
        entries = [context.env_vars[PYTHONPATH]]
    else:
        host_entries = _split(host.get(PYTHONPATH, ""))
        ray_entries = [e for e in _split(ray_env_vars.get(PYTHONPATH, "")) if e not in host_entries]
        entries = [*context.pythonpath, *ray_entries, *([] if isolated else host_entries)]
    if node_env.overlay is not None:
        entries.insert(0, str(node_env.overlay.hook))
    env_vars = {**ray_env_vars, **changed, ACTIVE_VARIABLE: node_env.key}
    env_vars[PYTHONPATH] = os.pathsep.join(entry for entry in entries if entry)
    prefix = ["cd", shlex.quote(context.cwd), "&&"] if context.cwd else []
    return WorkerStart(shlex.quote(context.python_executable), env_vars, prefix)


def describe(node_env: NodeEnv) -> list[str]:
    """Log lines saying where the env was built and with which versions."""
    context = node_env.context
    verb = "built" if node_env.built else "reused from the node's cache"
    lines = [
        f"runenv: env {node_env.key} {verb} in {node_env.seconds:.2f} s "
        f"(RUNENV_HOME={settings.runenv_home()})",
        f"runenv: interpreter {context.python_executable}",
    ]
    venv = context.env_vars.get("VIRTUAL_ENV")
    if venv:
        lines.append(f"runenv: venv {venv}")
    conda_prefix = context.env_vars.get("CONDA_PREFIX")
    if conda_prefix:
        lines.append(f"runenv: conda env {conda_prefix}")
    if context.cwd:
        lines.append(f"runenv: working dir {context.cwd}")
    if node_env.overlay is not None:
        lines.append(f"runenv: Ray and its requirements from the overlay {node_env.overlay.site}")
    if context.setup_log is not None:
        lines.append(f"runenv: setup log {context.setup_log}")
    return lines


def locked_versions(env: RuntimeEnv) -> str:
    conda = env.conda
    if isinstance(conda, dict) and "lock" in conda:
        pip = conda["lock"].get("pip") or {}
        names = [f"{p['name']}={p['version']}" for p in conda["lock"]["packages"]]
        return ", ".join([*names, *pip.get("requirements", ())])
    packages = env.python_packages
    if packages is None or packages.lock is None:
        return "(no Python packages)"
    return ", ".join(packages.lock.requirements) or "(none)"


def _split(value: str) -> list[str]:
    return [entry for entry in value.split(os.pathsep) if entry]
