"""``working_dir``: an archive unpacked into the cache; the cwd, and first on PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

from runenv import integrity
from runenv.context import Context
from runenv.digests import key_of
from runenv.envs.archives import fetch_and_unpack
from runenv.envs.setup import Setup
from runenv.spec import RuntimeEnv
from runenv.store_layout import holds_content_at_root

KIND = "working_dir"


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    uri = env.working_dir
    if uri is None:
        return context

    def build(staging: Path) -> dict[str, str]:
        # Ray's rule: a remote archive holding one top-level directory is used without it.
        # runenv's archives, and Ray's client's, hold the content at their root: nothing to lift.
        lift = not holds_content_at_root(uri)
        fetch_and_unpack(uri, staging / "code", setup, KIND, lift=lift)
        return {"uri": uri}

    # The entry is read-only; the run works in a writable copy of its own, as Ray's cwd is
    # writable: what a run writes there is never seen by another run (runenv.runs).
    entry = setup.acquire(KIND, key_of({"uri": uri}), build, f"working_dir {uri}")
    code = str(entry / "code")
    copy = setup.fresh_copy(code)
    return context.with_changes(
        cwd=copy,
        pythonpath=(copy, *context.pythonpath),
        env_vars={**context.env_vars, **integrity.USE_WITHOUT_WRITING},
        fresh_copies=(*context.fresh_copies, (code, copy)),
    )
