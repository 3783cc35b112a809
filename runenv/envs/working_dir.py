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

    # Writable, as Ray's is: a job's outputs in its cwd are seen (and the next run of the same
    # code gets the original files back: the changed entry no longer passes its check).
    what = f"working_dir {uri}"
    entry = setup.acquire(KIND, key_of({"uri": uri}), build, what, read_only=False)
    code = str(entry / "code")
    return context.with_changes(
        cwd=code,
        pythonpath=(code, *context.pythonpath),
        env_vars={**context.env_vars, **integrity.USE_WITHOUT_WRITING},
    )
