"""``pip`` / ``uv``: an isolated venv built with uv from the env's lock, cached by its content.

The venv does not see the host's packages (no system site-packages, and the host's PYTHONPATH
is dropped). It is built with ``--relocatable`` so it still works after the cache renames it
from its build directory into place, and installs come from uv's cache as hard links.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runenv import integrity
from runenv.context import Context
from runenv.digests import key_of
from runenv.envs import prebuilt, pylock, uv, wheelhouse
from runenv.envs.setup import Setup
from runenv.errors import EnvSetupError
from runenv.spec import Lock, PythonPackages, RuntimeEnv

if TYPE_CHECKING:
    from runenv.storage import Store

KIND = "python"
LOCK_KIND = "lock"
LOCK_FILE = "lock.json"
# Host variables that would let an isolated env see or load what it did not ask for.
HOST_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    packages = env.python_packages
    if packages is None:
        return context
    lock = packages.lock
    if lock is None:  # prepare() locks every env before its steps run
        raise RuntimeError("python_env.apply needs a prepared env: see runenv.materialize")

    key = key_of(packages.to_field())  # the lock included: the exact versions

    def build(staging: Path) -> dict[str, object]:
        venv = staging / "venv"
        shared = _shared_store(env)
        if shared is not None and _from_prebuilt(key, lock, shared, venv, setup):
            return {**_description(packages, lock), "prebuilt": True}
        _build_venv(packages, lock, venv, setup, env.upload_path)
        if shared is not None:
            prebuilt.share(key, shared, venv, setup)
        return _description(packages, lock)

    what = f"{packages.tool} env {', '.join(packages.packages) or '(no packages)'}"
    venv = setup.acquire(KIND, key, build, what) / "venv"
    return context.with_changes(
        python_executable=str(venv / "bin" / "python"),
        path=(str(venv / "bin"), *context.path),
        env_vars={**context.env_vars, "VIRTUAL_ENV": str(venv), **integrity.USE_WITHOUT_WRITING},
        unset_vars=(*context.unset_vars, *HOST_VARIABLES),
    )


def lock_packages(
    packages: PythonPackages, setup: Setup, platforms: Sequence[str] | None = None
) -> PythonPackages:
    """``packages`` with a lock resolved on this machine for ``platforms`` (default: this
    machine's and Linux x86_64 and aarch64).

    Locks are cached by what they resolve, as Ray caches a pip env by its requirements: the
    same unpinned requirements keep the versions they were first resolved to on this node.
    """
    platforms = tuple(platforms or pylock.default_platforms())

    def build(staging: Path) -> dict[str, object]:
        setup.report("resolve", ", ".join(packages.packages))
        setup.log.write(f"resolving {list(packages.packages)}")
        try:
            lock = uv.resolve(packages, platforms, setup.deadline.remaining())
        except EnvSetupError as error:
            setup.log.write(error.message)
            error.log_path = str(setup.log.path)
            raise
        setup.log.write("locked: " + ", ".join(lock.requirements))
        (staging / LOCK_FILE).write_text(json.dumps(lock.to_field()))
        return {"packages": list(packages.packages), "python": lock.python}

    key = key_of(
        {"python": uv.python_version(), "packages": packages.to_field(), "platforms": platforms}
    )
    entry = setup.acquire(LOCK_KIND, key, build, f"lock of {', '.join(packages.packages)}")
    lock = Lock.from_field(json.loads((entry / LOCK_FILE).read_text()))
    return dataclasses.replace(packages, lock=lock)


def _description(packages: PythonPackages, lock: Lock) -> dict[str, object]:
    return {"tool": packages.tool, "python": lock.python, "packages": list(packages.packages)}


def _shared_store(env: RuntimeEnv) -> Store | None:
    """Where prebuilt envs are shared: ``upload_path``, with ``config.share_env`` only."""
    if not env.config.share_env or env.upload_path is None:
        return None
    from runenv.storage import Store

    return Store(env.upload_path)


def _from_prebuilt(key: str, lock: Lock, store: Store, venv: Path, setup: Setup) -> bool:
    """A venv of this node's interpreter filled from the env another node shared, if any."""
    if not prebuilt.unpack_shared(key, store, venv, setup):
        return False
    command = [*uv.venv_command(venv, uv.interpreter_for(lock)), "--allow-existing"]
    setup.run(command, "creating the venv", uv.env())
    return True


def publish_wheels(env: RuntimeEnv, setup: Setup, *, strict: bool) -> None:
    """Put the files the env's lock names into its ``upload_path`` (see runenv.envs.wheelhouse)."""
    packages = env.python_packages
    if env.upload_path is None or packages is None or packages.lock is None:
        return
    if packages.lock.pylock is not None:
        from runenv.storage import Store

        wheelhouse.publish(packages.lock, Store(env.upload_path), setup, strict=strict)


def _build_venv(
    packages: PythonPackages, lock: Lock, venv: Path, setup: Setup, upload_path: str | None
) -> None:
    environment = uv.env()
    python = venv / "bin" / "python"
    interpreter = uv.interpreter_for(lock)
    if not uv.python_available(interpreter, setup.deadline.remaining()):
        raise EnvSetupError(
            f"the env was locked for Python {lock.python}, and this node has no Python "
            f"{interpreter}",
            hint=f"install Python {interpreter} here, or prepare the env with this node's Python",
            step="creating the venv",
        )
    setup.run(uv.venv_command(venv, interpreter), "creating the venv", environment)
    if packages.version:
        command = uv.seed_command(python, packages.tool, packages.version, packages.install_options)
        setup.run(command, f"installing {packages.tool}", environment)
    if lock.pylock is not None:
        _install_pylock(packages, lock, venv, setup, upload_path)
    elif lock.requirements:
        requirements = venv.parent / "requirements.lock"
        requirements.write_text("\n".join(lock.requirements) + "\n")
        setup.report("install", ", ".join(lock.requirements))
        command = uv.install_command(python, requirements, packages.install_options)
        setup.run(command, f"installing {packages.tool} packages", environment)
    if packages.check:
        setup.run(uv.check_command(python), f"{packages.tool} check", environment)


def _install_pylock(
    packages: PythonPackages, lock: Lock, venv: Path, setup: Setup, upload_path: str | None
) -> None:
    here = pylock.here()
    if lock.platforms and here not in lock.platforms:
        raise EnvSetupError(
            f"the env was locked for {', '.join(lock.platforms)}, and this node is {here}",
            hint=f"add {here} to config.platforms in the runtime_env and submit it again",
            step="install",
        )
    assert lock.pylock is not None
    data: Mapping[str, Any] = lock.pylock
    if upload_path is not None:
        from runenv.storage import Store

        data = wheelhouse.localized(lock, Store(upload_path), venv.parent / "wheels", setup)
    lock_file = venv.parent / pylock.FILE_NAME
    lock_file.write_text(pylock.render(data))
    setup.report("install", ", ".join(lock.requirements))
    python = venv / "bin" / "python"
    command = uv.pylock_install_command(python, lock_file, packages.install_options)
    setup.run(command, f"installing {packages.tool} packages", uv.env())
    shutil.rmtree(venv.parent / "wheels", ignore_errors=True)  # installed: not kept twice
