"""A prepared runenv env as a Ray ``runtime_env`` dict, in the two modes.

*Plugin mode*: the env travels whole in the ``runenv`` field, which runenv's plugin on each node
materializes in the node's own cache. *Stock mode*: it is spelled in Ray's own fields (the
locked pins in ``pip``/``uv``, code as URIs, ``env_vars``) for a cluster without the plugin.

Either way, code that went to Ray's own package store (``gcs://_ray_pkg_…`` URIs, used when the
env has no ``upload_path``) is handed to Ray's ``working_dir``/``py_modules`` fields, since only
Ray can read its store; ``config.setup_timeout_seconds`` is given to Ray too, so its agent
enforces the same limit.
"""

from __future__ import annotations

from typing import Any, Literal

from runenv.spec import RuntimeEnv
from runenv.spec.python_packages import install_options_key

PLUGIN_FIELD = "runenv"
# Set by the plugin in every process it prepares, to the env's key: a worker whose variable
# does not match ran somewhere the plugin did not act (a node without it).
ACTIVE_VARIABLE = "RUNENV_ACTIVE"
RAY_PACKAGE_PREFIX = "gcs://_ray_pkg_"
PLUGIN_CLASS = "runenv.ray.plugin.RunenvPlugin"
PLUGIN_PRIORITY = 90  # above Ray's built-in pip/uv/py_executable handling (10)

Mode = Literal["plugin", "stock"]

# Where each node's plugin says it is there: a key per node in the GCS's KV store, so that a
# driver learns which nodes have the plugin without starting a probe on each.
REGISTRY_NAMESPACE = "runenv"


def registry_key(node_id: str) -> str:
    return f"plugin:{node_id}"


def plugins_variable_value() -> str:
    """The value of ``RAY_RUNTIME_ENV_PLUGINS`` that registers runenv's plugin on a node."""
    import json

    return json.dumps([{"class": PLUGIN_CLASS, "priority": PLUGIN_PRIORITY}])


def is_ray_package(uri: str) -> bool:
    return uri.startswith(RAY_PACKAGE_PREFIX)


def to_ray(prepared: RuntimeEnv, mode: Mode) -> dict[str, Any]:
    """The Ray ``runtime_env`` dict for a prepared (portable, locked) env."""
    if prepared.is_empty():
        return {}
    return plugin_env(prepared) if mode == "plugin" else stock_env(prepared)


def plugin_env(prepared: RuntimeEnv) -> dict[str, Any]:
    data = prepared.to_dict()
    ray: dict[str, Any] = {}
    working_dir = data.get("working_dir")
    if working_dir and is_ray_package(working_dir):
        ray["working_dir"] = data.pop("working_dir")
    modules = data.get("py_modules", [])
    if any(is_ray_package(module) for module in modules):
        ray["py_modules"] = [module for module in modules if is_ray_package(module)]
        data["py_modules"] = [module for module in modules if not is_ray_package(module)]
        if not data["py_modules"]:
            del data["py_modules"]
    packages = prepared.python_packages
    if packages is None or packages.lock is None or packages.lock.pylock is None:
        data.pop("upload_path", None)  # else kept: nodes take the lock's files from there
    ray[PLUGIN_FIELD] = data
    return {**ray, **_ray_config(prepared)}


def stock_env(prepared: RuntimeEnv) -> dict[str, Any]:
    """Ray's own fields: the same versions on every node, without runenv on the nodes' side."""
    ray: dict[str, Any] = {}
    if prepared.conda is not None:
        ray["conda"] = stock_conda(prepared.conda)
    if prepared.working_dir:
        ray["working_dir"] = prepared.working_dir
    if prepared.py_modules:
        ray["py_modules"] = list(prepared.py_modules)
    packages = prepared.python_packages
    if packages is not None:
        pins = list(packages.lock.requirements if packages.lock else packages.packages)
        field: dict[str, Any] = {"packages": pins}
        if packages.install_options:
            field[install_options_key(packages.tool)] = list(packages.install_options)
        ray[packages.tool] = field
    env_vars = {**_conda_variables(prepared.conda), **prepared.env_vars}
    if env_vars:
        ray["env_vars"] = env_vars
    return {**ray, **_ray_config(prepared)}


def stock_conda(conda: str | dict[str, Any]) -> str | dict[str, Any]:
    """Ray's ``conda`` field for a prepared conda env: an existing env's name as it is; a
    locked definition as its explicit package URLs (``URL#md5``, as conda's explicit files
    write them) and its pip pins with their option lines, so Ray's conda installs exactly
    what was locked. URLs that hold ``${VAR}`` keep it: credentials do not go into Ray's
    runtime_env."""
    if isinstance(conda, str):
        return conda
    from runenv.conda.spec import CondaEnv

    env = CondaEnv.from_field(conda)
    if env.lock is None:
        return {key: value for key, value in conda.items() if key != "variables"}
    dependencies: list[Any] = env.lock.explicit_urls()
    if env.lock.pip is not None and env.lock.pip.requirements:
        options = [line for line in _pip_lines(conda) if line.startswith("-")]
        dependencies.append({"pip": [*options, *env.lock.pip.requirements]})
    return {"channels": list(env.lock.channels), "dependencies": dependencies}


def _pip_lines(conda: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for dependency in conda.get("dependencies", ()):
        if isinstance(dependency, dict):
            lines += dependency.get("pip", ())
    return lines


def _conda_variables(conda: str | dict[str, Any] | None) -> dict[str, str]:
    """An environment.yml's ``variables``, which runenv sets as env_vars (Ray's conda would
    need them activated)."""
    return dict(conda.get("variables", {})) if isinstance(conda, dict) else {}


def _ray_config(prepared: RuntimeEnv) -> dict[str, Any]:
    seconds = prepared.config.setup_timeout_seconds
    return {"config": {"setup_timeout_seconds": seconds}}


def from_ray(runtime_env: dict[str, Any] | None) -> RuntimeEnv | None:
    """The runenv env a Ray runtime_env carries in plugin mode (None if it carries none)."""
    if not runtime_env or PLUGIN_FIELD not in runtime_env:
        return None
    data = dict(runtime_env[PLUGIN_FIELD])
    if "working_dir" in runtime_env and "working_dir" not in data:
        data["working_dir"] = runtime_env["working_dir"]
    ray_modules = runtime_env.get("py_modules") or []
    if ray_modules:
        data["py_modules"] = [*data.get("py_modules", []), *ray_modules]
    return RuntimeEnv._from_canonical(data)


def plugin_key(field: dict[str, Any]) -> str:
    """The key of the env in a ``runenv`` field: what the plugin sets ACTIVE_VARIABLE to."""
    return RuntimeEnv._from_canonical(dict(field)).key


def expected_key(runtime_env: dict[str, Any]) -> str | None:
    """The ACTIVE_VARIABLE a worker started with ``runtime_env`` must see (None: no check)."""
    field = runtime_env.get(PLUGIN_FIELD)
    return plugin_key(field) if field else None
