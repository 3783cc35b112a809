"""``conda``: the name or prefix of an existing conda env is used as it is.

Building a conda env from an environment.yml or an inline dict is not implemented yet: it needs
py-rattler and a reachable conda channel. Until then such envs fail with a clear error.
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
        raise EnvSetupError(
            "building a conda env from a definition is not supported yet",
            hint="create the env with conda/mamba and pass its name or prefix as `conda`, "
            "or use `pip` / `uv`",
            step="conda",
        )
    prefix = _find_prefix(spec)
    return context.with_changes(
        python_executable=str(prefix / "bin" / "python"),
        path=(str(prefix / "bin"), *context.path),
        env_vars={**context.env_vars, "CONDA_PREFIX": str(prefix), "CONDA_DEFAULT_ENV": spec},
        unset_vars=(*context.unset_vars, "PYTHONPATH", "PYTHONHOME"),
    )


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
