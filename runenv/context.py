"""The Context: the only output of materializing an env, and how a process is started in it."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Context:
    """Everything a process needs to run in a materialized runtime environment.

    ``env_vars`` are set over the node's environment; ``unset_vars`` are removed from it (e.g. a
    host PYTHONPATH that would break an isolated env). ``pythonpath`` entries come first on
    PYTHONPATH, ``path`` entries first on PATH.
    """

    env_key: str
    python_executable: str
    cwd: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    pythonpath: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    unset_vars: tuple[str, ...] = ()
    setup_log: Path | None = None
    lease_fds: tuple[int, ...] = ()  # kept open in children so the cache never deletes in use

    def with_changes(self, **changes: Any) -> Context:
        return replace(self, **changes)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The full environment of a process started in this context."""
        env = dict(os.environ if base is None else base)
        for name in self.unset_vars:
            env.pop(name, None)
        if self.pythonpath:
            env["PYTHONPATH"] = _prepend(self.pythonpath, env.get("PYTHONPATH"))
        if self.path:
            env["PATH"] = _prepend(self.path, env.get("PATH"))
        env.update(self.env_vars)
        return env


def start_process(
    context: Context,
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int] = (),
    **popen_options: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (a list, never a shell string) in ``context``.

    A bare ``python`` as the program means the env's interpreter, whatever PATH says. The
    process inherits the Context's leases, so its cache entries stay while it runs.
    """
    if not argv:
        raise ValueError("no command to run")
    command = list(argv)
    if command[0] in ("python", "python3"):
        command[0] = context.python_executable
    return subprocess.Popen(
        command,
        cwd=context.cwd,
        env=context.environment(popen_options.pop("base_env", None)),
        pass_fds=(*context.lease_fds, *pass_fds),
        **popen_options,
    )


# Looked up once here: in the forked child (preexec_fn) a dlopen could deadlock.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def die_with_parent() -> None:
    """For ``preexec_fn``: the child is killed when the process that started it dies (Linux),
    so nothing runenv starts outlives it, even after a SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _prepend(entries: Sequence[str], existing: str | None) -> str:
    return os.pathsep.join([*entries, *([existing] if existing else [])])
