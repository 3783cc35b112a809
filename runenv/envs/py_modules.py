"""``py_modules``: each archive unpacked (or wheel installed) into the cache, on PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

from runenv import integrity, uris
from runenv.context import Context
from runenv.digests import key_of
from runenv.envs import uv
from runenv.envs.archives import fetch, fetch_and_unpack
from runenv.envs.setup import Setup
from runenv.spec import RuntimeEnv

KIND = "py_modules"


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    if not env.py_modules:
        return context
    paths = [_module_path(uri, setup) for uri in env.py_modules]
    return context.with_changes(
        pythonpath=(*paths, *context.pythonpath),
        env_vars={**context.env_vars, **integrity.USE_WITHOUT_WRITING},
    )


def _module_path(uri: str, setup: Setup) -> str:
    def build(staging: Path) -> dict[str, str]:
        if uris.archive_suffix(uri) == uris.WHEEL_SUFFIX:
            wheel = fetch(uri, staging, setup, KIND)
            setup.report("install", wheel.name)
            target = staging / "site"
            setup.run(uv.install_wheel_command(wheel, target), f"installing {wheel.name}", uv.env())
            if wheel.parent == staging:
                wheel.unlink()
        else:  # the archive's root is what goes on sys.path: nothing is lifted
            fetch_and_unpack(uri, staging / "site", setup, KIND, lift=False)
        return {"uri": uri}

    return str(setup.acquire(KIND, key_of({"uri": uri}), build, f"py_module {uri}") / "site")
