"""``materialize(env) -> Context``: a runtime env made ready on this node.

First the env is *prepared* — local code packaged and stored, Python packages locked — which is
what would be sent to other machines. Then each step (working_dir, py_modules, python packages,
conda, env_vars) gets its entries from the node's cache, building what is missing, and adds its
part to the Context.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

from runenv import inputs, settings
from runenv.cache import Builder, Entry, ResourceCache
from runenv.context import Context
from runenv.deadline import Deadline
from runenv.envs import STEPS, Setup, conda
from runenv.envs.python_env import lock_packages, publish_wheels
from runenv.envs.setup import StageCallback
from runenv.setup_log import SetupLog
from runenv.spec import PythonPackages, RuntimeEnv
from runenv.upload import make_portable

if TYPE_CHECKING:
    from runenv.storage import PackageStore


def materialize(env: RuntimeEnv, on_stage: StageCallback | None = None) -> Context:
    """Make ``env`` ready here and return the Context to start processes in.

    The cache entries the Context uses are leased until :func:`release` or the end of this
    process (and of the processes started with the Context, which inherit the leases).
    """
    setup = new_setup(env, on_stage)
    portable = prepare(env, setup)
    # Without an env of its own, the interpreter is runenv's: `python` in a shell command
    # (a job's entrypoint) finds it first, with runenv importable.
    context = Context(
        env_key=portable.key,
        python_executable=sys.executable,
        path=(os.path.dirname(sys.executable),),
        setup_log=setup.log.path,
    )
    try:
        for step in STEPS:
            context = step(portable, setup, context)
    except BaseException:
        for lease in setup.leases:
            lease.release()
        raise
    return context.with_changes(lease_fds=tuple(lease.fd for lease in setup.leases))


def prepare(
    env: RuntimeEnv,
    setup: Setup | None = None,
    on_stage: StageCallback | None = None,
    store: PackageStore | None = None,
) -> RuntimeEnv:
    """The portable, locked form of ``env``: URIs instead of local code, pinned packages.

    This is what crosses machines, so that every node runs the same code and versions. Local
    code goes to ``store`` (default: the env's ``upload_path``, else the store under
    ``RUNENV_HOME``). An env that is prepared already comes back as it is.
    """
    setup = setup or new_setup(env, on_stage)
    portable = make_portable(
        env, on_packaged=lambda path, package: setup.report("package", path), store=store
    )
    packages = portable.python_packages
    locked_here = packages is not None and packages.lock is None
    if packages is not None and packages.lock is None:
        locked = lock_packages(packages, setup, portable.config.platforms)
        portable = portable.replace(**{packages.tool: locked.to_field()})
    # The files a lock names go to upload_path where the lock is made. A lock file used as it
    # is (no platforms) is published by whoever prepares it, as far as its URLs can be read.
    final = portable.python_packages
    if locked_here or (final is not None and final.lock and not final.lock.platforms):
        publish_wheels(portable, setup, strict=locked_here)
    portable = conda.lock(portable, setup)
    setup.check_deadline("prepare")
    return portable


def lock(env: RuntimeEnv, on_stage: StageCallback | None = None) -> PythonPackages | None:
    """The env's ``pip``/``uv`` packages with their lock (resolved for ``config.platforms``
    unless the env names a lock file already); None for an env without them."""
    packages = env.python_packages
    if packages is None or packages.lock is not None:
        return packages
    return lock_packages(packages, new_setup(env, on_stage), env.config.platforms)


def release(context: Context) -> None:
    """Give up the Context's leases (its cache entries may then be collected)."""
    for fd in context.lease_fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def new_setup(env: RuntimeEnv, on_stage: StageCallback | None) -> Setup:
    log = SetupLog(settings.runenv_home() / "logs" / f"setup-{env.key}.log")
    deadline = Deadline(env.config.setup_timeout)
    return Setup(_NotingCache(), deadline, log, on_stage or _ignore_stage)


class _NotingCache(ResourceCache):
    """The node's cache, noting each entry a result uses for the CLI's recipes (runenv.inputs)."""

    def acquire(
        self, kind: str, key: str, build: Builder, deadline: Deadline, *, read_only: bool = False
    ) -> Entry:
        entry = super().acquire(kind, key, build, deadline, read_only=read_only)
        inputs.note_entry(str(entry.path))
        return entry


def _ignore_stage(stage: str, detail: str) -> None:
    return None
