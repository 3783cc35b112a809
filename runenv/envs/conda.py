"""``conda``: an env built from a definition (an environment.yml or an inline mapping) by
py-rattler (:mod:`runenv.conda`), or the name or prefix of an existing conda env, used as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runenv.context import Context
from runenv.envs.setup import Setup
from runenv.errors import EnvSetupError
from runenv.spec import RuntimeEnv


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    spec = env.conda
    if spec is None:
        return context
    if isinstance(spec, dict):
        from runenv.conda.build import apply_built
        from runenv.conda.spec import CondaEnv

        return apply_built(CondaEnv.from_field(spec), setup, context)
    prefix = _find_prefix(spec)
    return context.with_changes(
        python_executable=str(prefix / "bin" / "python"),
        path=(str(prefix / "bin"), *context.path),
        env_vars={**context.env_vars, "CONDA_PREFIX": str(prefix), "CONDA_DEFAULT_ENV": spec},
        unset_vars=(*context.unset_vars, "PYTHONPATH", "PYTHONHOME"),
    )


def lock(env: RuntimeEnv, setup: Setup) -> RuntimeEnv:
    """``env`` with its conda definition locked (solved here), if it has one not yet locked."""
    spec = env.conda
    if not isinstance(spec, dict) or "lock" in spec:
        return env
    from runenv.conda.build import lock_env
    from runenv.conda.spec import CondaEnv

    locked = lock_env(CondaEnv.from_field(spec), setup)
    assert locked.lock is not None
    return env.replace(conda={**spec, "lock": locked.lock.to_field()})


def _find_prefix(name_or_prefix: str) -> Path:
    candidates = [Path(name_or_prefix)] if "/" in name_or_prefix else _named(name_or_prefix)
    for prefix in candidates:
        if (prefix / "bin" / "python").exists():
            return prefix
    raise EnvSetupError(
        f"conda env {name_or_prefix!r} not found on this node"
        + (f" (looked in {', '.join(map(str, candidates))})" if candidates else ""),
        hint="create it first (conda create -n NAME python=X.Y), or pass its absolute prefix",
        step="conda",
    )


def _named(name: str) -> list[Path]:
    roots = [os.environ.get("CONDA_PREFIX"), os.environ.get("MAMBA_ROOT_PREFIX")]
    conda = shutil.which("conda") or os.environ.get("CONDA_EXE")
    if conda:
        roots.append(str(Path(conda).resolve().parent.parent))
    found = []
    for root in filter(None, roots):
        base = Path(root)
        found += [base / "envs" / name, base.parent / name]  # CONDA_PREFIX may be an env itself
    return list(dict.fromkeys(found))
