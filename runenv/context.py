"""The Context: the only output of materializing an env, and how a process is started in it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runenv import process
from runenv.environ import compose


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
    # (entry, copy): the run works in a fresh copy of each entry (runenv.runs), which a later
    # run starting in this same context (the CLI's fast path) must make afresh.
    fresh_copies: tuple[tuple[str, str], ...] = ()

    def with_changes(self, **changes: Any) -> Context:
        return replace(self, **changes)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The full environment of a process started in this context."""
        return compose(
            os.environ if base is None else base,
            self.unset_vars,
            self.pythonpath,
            self.path,
            self.env_vars,
        )


def start_process(
    context: Context,
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int] = (),
    base_env: Mapping[str, str] | None = None,
    own_group: bool = True,
    arms_itself: bool = False,
    wrapper: Sequence[str] = (),
    stdin: process.Stream = None,
    stdout: process.Stream = None,
    stderr: process.Stream = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (a list, never a shell string) in ``context``, with runenv's launcher:
    its own process group unless ``own_group`` is False, dying with this process.

    A bare ``python`` as the program means the env's interpreter, whatever PATH says. The
    process inherits the Context's leases, so its cache entries stay while it runs.
    ``wrapper``: see :func:`runenv.process.start`.
    """
    if not argv:
        raise ValueError("no command to run")
    command = list(argv)
    if command[0] in ("python", "python3"):
        command[0] = context.python_executable
    return process.start(
        command,
        cwd=context.cwd,
        env=context.environment(base_env),
        pass_fds=(*context.lease_fds, *pass_fds),
        own_group=own_group,
        arms_itself=arms_itself,
        wrapper=wrapper,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
