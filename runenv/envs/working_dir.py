"""``working_dir``: an archive unpacked into the cache; the cwd, and first on PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

from runenv import uris
from runenv.context import Context
from runenv.envs.archives import fetch_and_unpack
from runenv.envs.setup import Setup, content_key
from runenv.spec import RuntimeEnv

KIND = "working_dir"


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    uri = env.working_dir
    if uri is None:
        return context

    def build(staging: Path) -> dict[str, str]:
        # Ray's rule: a remote archive holding one top-level directory is used without it.
        lift = not uris.is_runenv_package(uri)
        fetch_and_unpack(uri, staging / "code", setup, KIND, lift=lift)
        return {"uri": uri}

    entry = setup.acquire(KIND, content_key(uri), build, f"working_dir {uri}")
    code = str(entry / "code")
    return context.with_changes(cwd=code, pythonpath=(code, *context.pythonpath))
